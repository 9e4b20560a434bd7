"""Plausible, consistent tally results for any template, derived from its checks.

The checks of a template are linear relations between fields (`sum(A) == sum(B)`, `sum(A) <= sum(B)`),
each field bounded by its boxes and its `max_value`. A result is built one field at a time: after each
choice, interval propagation over the relations narrows every other field's range (and fixes the fields
the arithmetic determines), so the sampler never paints itself into a corner except through rare integer
effects, where it starts again. The order and the distributions make the numbers look like a polling
station's: registered voters near the cap, a turnout of 55-97 %, uneven splits between candidates, and
small or zero figures for the minor categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tpskit.forms import Template

# Name hints for categories that are usually zero or small (a generic template without them still works:
# its fields are then drawn as ordinary shares).
MINOR_HINTS = ("dptb", "dpk", "rusak", "tidak_sah", "invalid", "spoil")


@dataclass(frozen=True)
class _Rel:
    coef: dict[str, int]  # sum(coef * value) == 0 (eq) or <= 0 (le)
    eq: bool
    lhs: tuple[str, ...]
    rhs: tuple[str, ...]


class Infeasible(Exception):
    pass


def _relations(template: Template) -> list[_Rel]:
    rels = []
    for c in template.checks:
        coef: dict[str, int] = {}
        for n in c.sum:
            coef[n] = coef.get(n, 0) + 1
        for n in c.rhs:
            coef[n] = coef.get(n, 0) - 1
        coef = {n: a for n, a in coef.items() if a}
        rels.append(_Rel(coef, c.relation == "equals", tuple(c.sum), tuple(c.rhs)))
    return rels


def _bounds(r: _Rel, lo: dict[str, int], hi: dict[str, int]) -> tuple[int, int]:
    smin = sum(a * (lo[n] if a > 0 else hi[n]) for n, a in r.coef.items())
    smax = sum(a * (hi[n] if a > 0 else lo[n]) for n, a in r.coef.items())
    return smin, smax


def _propagate(rels: list[_Rel], lo: dict[str, int], hi: dict[str, int]) -> None:
    """Bound consistency: narrow [lo, hi] of every field until nothing changes; Infeasible if empty."""
    changed = True
    while changed:
        changed = False
        for r in rels:
            smin, smax = _bounds(r, lo, hi)
            if smin > 0 or (r.eq and smax < 0):
                raise Infeasible
            for n, a in r.coef.items():
                rest_min = smin - a * (lo[n] if a > 0 else hi[n])
                rest_max = smax - a * (hi[n] if a > 0 else lo[n])
                # a*x <= -rest_min always; a*x >= -rest_max for an equality.
                if a > 0:
                    new_lo, new_hi = (-((rest_max) // a) if r.eq else lo[n]), (-rest_min) // a
                else:
                    b = -a
                    new_lo, new_hi = -((-rest_min) // b), (rest_max // b if r.eq else hi[n])
                nl, nh = max(lo[n], new_lo), min(hi[n], new_hi)
                if nl > nh:
                    raise Infeasible
                if (nl, nh) != (lo[n], hi[n]):
                    lo[n], hi[n] = nl, nh
                    changed = True
                    smin, smax = _bounds(r, lo, hi)


def _aggregates(template: Template, rels: list[_Rel]) -> set[str]:
    """Fields that are the single term of one side of an equality whose other side has several terms."""
    out = set()
    for r in rels:
        if r.eq:
            if len(r.rhs) == 1 and len(r.lhs) > 1:
                out.add(r.rhs[0])
            if len(r.lhs) == 1 and len(r.rhs) > 1:
                out.add(r.lhs[0])
    return out


def _is_minor(name: str, aggregates: set[str]) -> bool:
    return name not in aggregates and any(h in name.lower() for h in MINOR_HINTS)


def _minor_value(rng: np.random.Generator, scale: int) -> int:
    if rng.random() < 0.55:
        return 0
    return int(rng.integers(1, max(2, round(0.04 * scale)) + 1))


def _clip(v: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, round(v))))


def random_result(template: Template, rng: np.random.Generator,
                  registered_voters: int | None = None, max_tries: int = 200) -> dict[str, int]:
    """A result that satisfies every check and bound of the template, with polling-station-like numbers."""
    for _ in range(max_tries):
        try:
            values = _sample(template, rng, registered_voters)
        except Infeasible:
            continue
        if is_consistent(template, values, registered_voters):
            return values
    # Rejection sampling over uniform values as the last resort; all zeros satisfies any such template.
    for _ in range(max_tries):
        values = {f.name: int(rng.integers(0, f.upper_bound(registered_voters) + 1)) for f in template.fields}
        if is_consistent(template, values, registered_voters):
            return values
    return {f.name: 0 for f in template.fields}


def is_consistent(template: Template, values: dict[str, int], registered_voters: int | None = None) -> bool:
    """Every check holds and every value fits its boxes, its max_value and the registered voters."""
    for f in template.fields:
        v = values.get(f.name)
        if v is None or v < 0 or v > f.upper_bound(registered_voters):
            return False
    return all(c.holds(values) for c in template.checks)


def _sample(template: Template, rng: np.random.Generator, registered_voters: int | None) -> dict[str, int]:
    rels = _relations(template)
    aggregates = _aggregates(template, rels)
    names = [f.name for f in template.fields]
    lo = {n: 0 for n in names}
    hi = {f.name: f.upper_bound(registered_voters) for f in template.fields}
    _propagate(rels, lo, hi)
    done: set[str] = set()

    def assign(name: str, value: int) -> None:
        v = _clip(value, lo[name], hi[name])
        lo[name] = hi[name] = v
        _propagate(rels, lo, hi)

    def settle() -> None:
        for n in names:
            if lo[n] == hi[n]:
                done.add(n)

    # Anchors: fields with a max_value (registered voters) are drawn first, near their cap.
    anchors = [f for f in template.fields if f.max_value is not None]
    for f in anchors:
        top = hi[f.name]
        frac = (0.9, 1.0) if registered_voters is not None else (0.5, 1.0)
        assign(f.name, rng.uniform(*frac) * top)
    settle()
    scale = max([lo[f.name] for f in anchors], default=int(rng.integers(120, 300)))

    while len(done) < len(names):
        settle()
        if len(done) == len(names):
            break
        # 1. "Used at most what was available": an at_most whose right side is known.
        rel = next((r for r in rels if not r.eq and all(n in done for n in r.rhs)
                    and any(n not in done for n in r.lhs)), None)
        if rel is not None:
            n = next(n for n in rel.lhs if n not in done)
            top = hi[n]
            frac = rng.uniform(0.55, 0.97) if top > 5 else rng.uniform(0.0, 1.0)
            if any(h in n.lower() for h in ("dpk",)) and rng.random() < 0.7:
                frac = 1.0  # DPK voters are those who came to vote: all of them did
            assign(n, frac * top)
            continue
        # 2. A known total split among its unknown parts: uneven shares, minor parts small.
        rel = next((r for r in rels if r.eq and _one_side_known(r, done) is not None), None)
        if rel is not None:
            parts = [n for n in _one_side_known(rel, done) or () if n not in done]
            minors = [n for n in parts if _is_minor(n, aggregates)]
            for n in minors:
                if n not in done:
                    assign(n, _minor_value(rng, scale))
                    settle()
            majors = [n for n in parts if n not in minors and n not in done]
            if majors:
                total = _remaining_total(rel, majors, lo)
                shares = rng.dirichlet(np.full(len(majors), rng.uniform(0.8, 4.0)))
                # The last major part is what the arithmetic leaves; propagation fixes it.
                for n, s in zip(majors[:-1], shares[:-1], strict=True):
                    if n not in done:
                        assign(n, 0 if rng.random() < 0.03 else s * total)
                        settle()
            settle()
            continue
        # 3. Nothing implied: draw a free part (never an aggregate, which the parts will determine).
        free = [n for n in names if n not in done]
        candidates = [n for n in free if n not in aggregates] or free
        n = candidates[0]
        if _is_minor(n, aggregates):
            assign(n, _minor_value(rng, scale))
        else:
            assign(n, rng.uniform(0.02, 0.35) * scale)
    return {n: lo[n] for n in names}


def _one_side_known(r: _Rel, done: set[str]) -> tuple[str, ...] | None:
    """The side with unknown parts when the other side is fully known, else None."""
    if all(n in done for n in r.rhs) and any(n not in done for n in r.lhs):
        return r.lhs
    if all(n in done for n in r.lhs) and any(n not in done for n in r.rhs):
        return r.rhs
    return None


def _remaining_total(r: _Rel, parts: list[str], lo: dict[str, int]) -> int:
    """What the unknown `parts` must add up to, given every other field of an equality is fixed."""
    side = r.lhs if parts[0] in r.lhs else r.rhs
    other = r.rhs if side is r.lhs else r.lhs
    return sum(lo[n] for n in other) - sum(lo[n] for n in side if n not in parts)
