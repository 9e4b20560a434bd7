"""From per-box class probabilities to a probability for every value a field can hold.

Officers right-align their numbers and fill unused leading boxes with nothing, `0`, a dash or an X
(`  7`, ` 07`, `007`, `-07`, `XX7` all mean 7; the model reads blank, dash and X as one EMPTY class).
Treating boxes as independent evidence, the probability of a value is the sum over the ways to write it:

    P(v) = prod(leading boxes: p_empty + p_0) * prod(significant boxes: p_digit)

which is a proper probability: summed over every value plus every malformed pattern it totals one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .types import EMPTY

#: Floor for a box probability so that an impossible-looking reading keeps a finite log-likelihood.
PROB_FLOOR = 1e-12


def value_log_likelihood(probs: np.ndarray, value: int) -> float:
    """log P(value) for one field, from its (n_boxes, 11) class probabilities."""
    return FieldLikelihood(probs)(value)


class FieldLikelihood:
    """`value_log_likelihood` of one field for any number of values: the per-box logarithms are taken once
    and every value asked for is remembered (the checks' search asks for the same values again and again).

    The same float operations in the same order as term by term, so the same bits."""

    def __init__(self, probs: np.ndarray) -> None:
        p = np.maximum(probs, PROB_FLOOR).tolist()
        self.n_boxes = len(p)
        #: log P(box i written as a leading blank or 0), and log P(box i = digit d).
        self._lead = [math.log(min(1.0, row[EMPTY] + row[0])) for row in p]
        self._digit = [[math.log(x) for x in row[:10]] for row in p]
        self._known: dict[int, float] = {}

    def __call__(self, value: int) -> float:
        ll = self._known.get(value)
        if ll is None:
            ll = self._known[value] = self._compute(value)
        return ll

    def spell(self, classes: list[list[int]], out: dict[int, float]) -> None:
        """Every value that a choice of one class per box (from `classes`, one list per box) spells, with its
        log-likelihood, into `out` in the order itertools.product would choose them (see pattern_value).
        Depth first: a choice's leading boxes are summed once for all that follow, in the same order as
        `_compute` sums them, so the same bits."""
        n = self.n_boxes
        known = self._known

        def walk(i: int, value: int, leading: bool, ll: float) -> None:
            last = i == n - 1
            for c in classes[i]:
                if leading and (c == EMPTY or c == 0):
                    if not last:
                        walk(i + 1, 0, True, ll + self._lead[i])
                    elif c == 0:  # all leading blanks or zeros, then a 0: the value 0
                        v, s = 0, ll + self._digit[i][0]
                        out.setdefault(v, s)
                        known.setdefault(v, s)
                elif c != EMPTY:  # a blank after the first digit spells nothing
                    v, s = value * 10 + c, ll + self._digit[i][c]
                    if last:
                        out.setdefault(v, s)
                        known.setdefault(v, s)
                    else:
                        walk(i + 1, v, False, s)

        if n:
            walk(0, 0, True, 0.0)

    def _compute(self, value: int) -> float:
        n = self.n_boxes
        if value < 0 or value >= 10**n:
            return -math.inf
        sig = str(value)
        lead = n - len(sig)
        ll = 0.0
        for i in range(lead):
            ll += self._lead[i]
        for j, d in enumerate(sig):
            ll += self._digit[lead + j][ord(d) - 48]
        return ll


def pattern_value(classes: tuple[int, ...]) -> int | None:
    """The value a sequence of box classes spells, or None for a malformed one (e.g. `7 _`, all blank)."""
    n, first = len(classes), 0
    while first < n and (classes[first] == EMPTY or classes[first] == 0):
        first += 1
    if first == n:
        return 0 if classes[-1] == 0 else None
    value = 0
    for c in classes[first:]:
        if c == EMPTY:
            return None
        value = value * 10 + c
    return value


@dataclass(frozen=True)
class ValueCandidate:
    value: int
    log_likelihood: float

    @property
    def p(self) -> float:
        return math.exp(self.log_likelihood)


def field_candidates(probs: np.ndarray, per_box: int = 3, keep: int = 8,
                     likelihood: FieldLikelihood | None = None) -> list[ValueCandidate]:
    """The most likely values of one field, best first, from each box's `per_box` best classes.
    `likelihood`: the field's FieldLikelihood, if the caller keeps one (made here otherwise)."""
    order = np.argsort(-probs, axis=1)[:, :per_box].tolist()
    ll = likelihood if likelihood is not None else FieldLikelihood(probs)
    values: dict[int, float] = {}
    ll.spell(order, values)
    # In the order a set filled one value at a time, as spelled, iterates (equal likelihoods keep it).
    spelled: set[int] = set()
    for v in values:
        spelled.add(v)
    cands = [ValueCandidate(v, values[v]) for v in spelled]
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
