"""From per-box class probabilities to a probability for every value a field can hold.

Officers right-align their numbers and fill unused leading boxes with nothing, `0`, a dash or an X
(`  7`, ` 07`, `007`, `-07`, `XX7` all mean 7; the model reads blank, dash and X as one EMPTY class).
Treating boxes as independent evidence, the probability of a value is the sum over the ways to write it:

    P(v) = prod(leading boxes: p_empty + p_0) * prod(significant boxes: p_digit)

which is a proper probability: summed over every value plus every malformed pattern it totals one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .types import EMPTY

#: Floor for a box probability so that an impossible-looking reading keeps a finite log-likelihood.
PROB_FLOOR = 1e-12


def _digits_of(value: int, n_boxes: int) -> list[int]:
    s = str(value)
    if len(s) > n_boxes:
        raise ValueError(f"{value} does not fit in {n_boxes} boxes")
    return [int(c) for c in s]


def value_log_likelihood(probs: np.ndarray, value: int) -> float:
    """log P(value) for one field, from its (n_boxes, 11) class probabilities."""
    n = probs.shape[0]
    if value < 0 or value >= 10**n:
        return -math.inf
    p = np.maximum(probs, PROB_FLOOR)
    sig = _digits_of(value, n)
    lead = n - len(sig)
    ll = 0.0
    for i in range(lead):
        ll += math.log(min(1.0, p[i, EMPTY] + p[i, 0]))
    for j, d in enumerate(sig):
        ll += math.log(p[lead + j, d])
    return ll


def pattern_value(classes: tuple[int, ...]) -> int | None:
    """The value a sequence of box classes spells, or None for a malformed one (e.g. `7 _`, all blank)."""
    n = len(classes)
    first = next((i for i, c in enumerate(classes) if c not in (EMPTY, 0)), None)
    if first is None:
        return 0 if classes[-1] == 0 else None
    if any(c == EMPTY for c in classes[first:]):
        return None
    return int("".join(str(c) for c in classes[first:])) if first < n else None


@dataclass(frozen=True)
class ValueCandidate:
    value: int
    log_likelihood: float

    @property
    def p(self) -> float:
        return math.exp(self.log_likelihood)


def field_candidates(probs: np.ndarray, per_box: int = 3, keep: int = 8) -> list[ValueCandidate]:
    """The most likely values of one field, best first, from each box's `per_box` best classes."""
    order = np.argsort(-probs, axis=1)[:, :per_box]
    values: set[int] = set()
    for combo in itertools.product(*[tuple(int(c) for c in row) for row in order]):
        v = pattern_value(combo)
        if v is not None:
            values.add(v)
    cands = [ValueCandidate(v, value_log_likelihood(probs, v)) for v in values]
    cands.sort(key=lambda c: -c.log_likelihood)
    return cands[:keep]


def bubble_likelihoods(filled: list[int], n_classes: int = 11) -> np.ndarray:
    """Likelihood of a bubble row's observation under each true box class.

    Rates are conservative guesses at officer behaviour (a bubble on the wrong digit, one forgotten);
    they only need to make agreement strong evidence and disagreement weak, the checks decide the rest.
    """
    q = np.empty(n_classes, dtype=np.float64)
    if len(filled) == 1:
        q[:] = 0.01  # wrong bubble, or a bubble for a box that has no digit
        q[filled[0]] = 0.95
    elif not filled:
        q[:] = 0.05  # forgotten bubble
        q[EMPTY] = 0.9
    else:
        q[:] = 0.02
        q[list(filled)] = 0.45
    return q
