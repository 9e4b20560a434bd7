"""The form's arithmetic as error correction.

A field is a suspect when its own reading is not confident, when digits and bubbles disagree, or when it
takes part in a check that fails (a closed 5 can read as 6 at p = 0.9999). Suspects and the fields they
share a check with become variables; every combination of their candidate values that satisfies all
checks and bounds is weighed by likelihood. The best combination is adopted only when it is far more
likely than the runner-up (`margin`): a combination that merely balances the sums (71 + 26 read as
21 + 76) is no proof. The search is exact within a node budget; past it nothing is adopted.

Officers also add up wrongly. A sheet whose written numbers break a check can always be "repaired" by
changing some other field to balance the sums, so the best repair must also beat that explanation: it is
adopted only when it costs the readings less than the prior odds of an arithmetic slip on the sheet
(`slip_prior`), i.e. likelihood(best) >= slip_prior * likelihood(the digits' own best readings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tpskit.forms import Check

DEFAULT_MARGIN = 1e4
DEFAULT_NODE_BUDGET = 200_000
#: Prior odds that a sheet, as written, breaks one of its checks (an officer's slip). Measured with
#: bench/read.py's slip sheets: at 1e-3 one slip in 100 was "repaired" by reading an ambiguous 0 as the 8
#: the sums wanted; at 1e-2 none was, the closest three times below. Safety over automation: 1e-2.
DEFAULT_SLIP_PRIOR = 1e-2


@dataclass
class FieldEvidence:
    name: str
    #: Largest value allowed: the boxes' capacity, max_value, or the TPS's registered voters.
    upper: int
    #: Log-likelihood of any value, from the field's own readings.
    log_likelihood: Callable[[int], float]
    #: Candidate values, best first (may be empty for a field where nothing legible was written).
    candidates: list[int]
    #: Whether the field's own reading is trustworthy alone (confident, and digits agree with bubbles).
    trusted: bool


@dataclass
class Resolution:
    #: Values after resolution (the top readings where nothing was adopted).
    values: dict[str, int | None]
    #: Variables of the search: fields that the checks decided (or failed to decide).
    variables: set[str] = field(default_factory=set)
    adopted: bool = False
    #: log(best / runner-up); +inf when only one combination satisfies the checks.
    log_margin: float = 0.0
    #: log(best / the variables' own best readings): what the repair costs the readings (<= 0).
    log_support: float = 0.0
    solutions_found: int = 0
    budget_exhausted: bool = False

    def posterior(self) -> float:
        """Probability of the adopted combination among those found (1 - 1/margin, roughly)."""
        if not self.adopted:
            return 0.0
        return 1.0 / (1.0 + math.exp(-self.log_margin)) if math.isfinite(self.log_margin) else 1.0


def check_holds(check: Check, values: Mapping[str, int | None]) -> bool:
    """Whether `check` holds on `values`; False while one of its fields has no value."""
    return _Plan.of(check).holds(values)


def _implied(check: Check, target: str, values: Mapping[str, int | None]) -> int | None:
    """The value of `target` that makes an equality check hold, the other fields as given."""
    return _Plan.of(check).implied(target, values)


@dataclass(frozen=True)
class _Plan:
    """A check's fields as plain tuples, its arithmetic in one place: the search keeps one per check and tests
    it many times (the template's Check builds these tuples at each call)."""

    sum: tuple[str, ...]
    rhs: tuple[str, ...]
    fields: tuple[str, ...]
    equals: bool

    @classmethod
    def of(cls, check: Check) -> _Plan:
        return cls(sum=tuple(check.sum), rhs=tuple(check.rhs), fields=tuple(check.fields),
                   equals=check.relation == "equals")

    def holds(self, values: Mapping[str, int | None]) -> bool:
        for n in self.fields:
            if values.get(n) is None:
                return False
        left = sum(values[n] for n in self.sum)  # type: ignore[misc]
        right = sum(values[n] for n in self.rhs)  # type: ignore[misc]
        return left == right if self.equals else left <= right

    def implied(self, target: str, values: Mapping[str, int | None]) -> int | None:
        if not self.equals:
            return None
        for n in self.fields:
            if n != target and values.get(n) is None:
                return None
        left = sum(values[n] for n in self.sum if n != target)  # type: ignore[misc]
        right = sum(values[n] for n in self.rhs if n != target)  # type: ignore[misc]
        in_sum, in_rhs = self.sum.count(target), self.rhs.count(target)
        if in_sum == in_rhs:
            return None
        num, den = right - left, in_sum - in_rhs  # left + in_sum*x == right + in_rhs*x
        return num // den if num % den == 0 else None


def _search_order(variables: set[str], cands: Mapping[str, list[int]], checks: Sequence[Check]
                  ) -> tuple[list[str], dict[str, Check]]:
    """An order for the search in which each equality check forces the value of its last variable.

    Built from the end: an unused equality check whose fields are not yet placed gives its most
    uncertain variable (most candidates) the last free position; that variable is then never
    enumerated, its value follows from the check. The remaining variables are enumerated first.
    """
    remaining = set(variables)
    tail: list[str] = []
    forced_by: dict[str, Check] = {}
    progress = True
    while progress:
        progress = False
        for c in checks:
            if c.relation != "equals" or c in forced_by.values() or any(n in tail for n in c.fields):
                continue
            free = [n for n in c.fields if n in remaining]
            if not free:
                continue
            pick = max(free, key=lambda n: (len(cands[n]), n))
            remaining.discard(pick)
            tail.insert(0, pick)
            forced_by[pick] = c
            progress = True
    head = sorted(remaining, key=lambda n: (len(cands[n]), n))
    return head + tail, forced_by


def resolve(
    evidence: Mapping[str, FieldEvidence],
    checks: Sequence[Check],
    margin: float = DEFAULT_MARGIN,
    node_budget: int = DEFAULT_NODE_BUDGET,
    slip_prior: float = DEFAULT_SLIP_PRIOR,
) -> Resolution:
    top: dict[str, int | None] = {n: (e.candidates[0] if e.candidates else None) for n, e in evidence.items()}
    failing = [c for c in checks if not check_holds(c, top)]
    out_of_bounds = {n for n, v in top.items() if v is not None and v > evidence[n].upper}
    suspects = {n for n, e in evidence.items() if not e.trusted} | out_of_bounds
    suspects |= {n for c in failing for n in c.fields}
    if not suspects:
        return Resolution(values=top)

    variables = set(suspects)
    for c in checks:
        if variables.intersection(c.fields):
            variables.update(c.fields)

    # Candidate values: each field's own best readings plus what each check implies for it, so that a
    # single misread field is always explained, however confident the model was.
    irrelevant = math.log(slip_prior) - math.log(margin)
    cands: dict[str, list[int]] = {}
    for n in variables:
        # A trusted field outside the suspects keeps its reading unless a check forces another value
        # on it (see _search_order); only suspects enumerate their alternatives.
        vals = list(evidence[n].candidates if n in suspects else evidence[n].candidates[:1])
        for c in checks:
            if n in c.fields:
                v = _implied(c, n, top)
                if v is not None:
                    vals.append(v)
        seen: set[int] = set()
        ok = [v for v in vals if 0 <= v <= evidence[n].upper and not (v in seen or seen.add(v))]
        scored = sorted(((evidence[n].log_likelihood(v), v) for v in ok), reverse=True)
        own = evidence[n].log_likelihood(evidence[n].candidates[0]) if evidence[n].candidates else 0.0
        # A value costing more than the slip prior times the margin can be neither the adopted repair
        # nor a runner-up close enough to block it: leaving it out changes no decision.
        cands[n] = [v for lv, v in scored if lv - own >= irrelevant]
    ll = {n: {v: evidence[n].log_likelihood(v) for v in cands[n]} for n in variables}

    order, forced_by = _search_order(variables, cands, checks)
    position = {n: i for i, n in enumerate(order)}
    fixed = {n: v for n, v in top.items() if n not in variables}
    # A check is tested as soon as its last variable is assigned.
    closes_at: dict[int, list[_Plan]] = {}
    for c in checks:
        vs = [position[n] for n in c.fields if n in position]
        if vs:
            closes_at.setdefault(max(vs), []).append(_Plan.of(c))
        elif not check_holds(c, fixed):
            return Resolution(values=top, variables=variables)  # fails among trusted fields alone
    best_rest = [0.0] * (len(order) + 1)
    for i in range(len(order) - 1, -1, -1):
        e = evidence[order[i]]
        head = max([*ll[order[i]].values(), *([e.log_likelihood(e.candidates[0])] if e.candidates else [])],
                   default=-math.inf)
        best_rest[i] = best_rest[i + 1] + head

    # Combinations scoring below this cannot change the decision (see `irrelevant` above).
    floor = best_rest[0] + irrelevant
    found: list[tuple[float, dict[str, int]]] = []  # the two best, best first
    nodes = 0
    current: dict[str, int | None] = dict(fixed)
    forced_plan = {n: _Plan.of(c) for n, c in forced_by.items()}
    no_checks: list[_Plan] = []

    def second_best() -> float:
        return found[1][0] if len(found) > 1 else -math.inf

    def values_at(name: str) -> list[int]:
        plan = forced_plan.get(name)
        if plan is None:
            return cands[name]
        v = plan.implied(name, current)  # the rest of the check is assigned: the value is forced
        return [v] if v is not None and 0 <= v <= evidence[name].upper else []

    def likelihood(name: str, v: int) -> float:
        got = ll[name].get(v)
        if got is None:
            got = ll[name][v] = evidence[name].log_likelihood(v)
        return got

    def search(i: int, score: float) -> bool:
        nonlocal nodes
        if i == len(order):
            found.append((score, {n: current[n] for n in order}))  # type: ignore[misc]
            found.sort(key=lambda s: -s[0])
            del found[2:]
            return True
        name = order[i]
        for v in values_at(name):
            nodes += 1
            if nodes > node_budget:
                return False
            s = score + likelihood(name, v)
            if s + best_rest[i + 1] <= max(second_best(), floor):
                if name in forced_by:
                    continue
                break  # candidates are sorted: no later one can do better
            current[name] = v
            if all(c.holds(current) for c in closes_at.get(i, no_checks)) and not search(i + 1, s):
                return False
        current.pop(name, None)
        return True

    complete = search(0, 0.0)
    res = Resolution(values=top, variables=variables, solutions_found=len(found),
                     budget_exhausted=not complete)
    if not complete or not found:
        return res
    best_score, best = found[0]
    res.log_margin = best_score - found[1][0] if len(found) > 1 else math.inf
    own_best = sum(evidence[n].log_likelihood(evidence[n].candidates[0]) if evidence[n].candidates
                   else max(ll[n].values(), default=-math.inf) for n in order)
    res.log_support = best_score - own_best
    if res.log_margin >= math.log(margin) and res.log_support >= math.log(slip_prior):
        res.values = {**top, **best}
        res.adopted = True
    return res
