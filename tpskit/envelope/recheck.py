"""The arithmetic recheck: a verified result's values against its form's maximums and checks, as the
district re-runs them on every result (the kit ran them before it signed)."""

from __future__ import annotations

from dataclasses import dataclass

from tpskit.envelope.payload import ResultPayload
from tpskit.forms import Check, Template


@dataclass(frozen=True)
class _TemplateRules:
    names: frozenset[str]
    limits: tuple[tuple[str, int], ...]  # field -> largest value its boxes and its maximum allow
    checks: tuple[tuple[Check, tuple[str, ...]], ...]  # check and the fields it reads


_RULES: dict[int, tuple[Template, _TemplateRules]] = {}


def _rules(template: Template) -> _TemplateRules:
    """What recheck needs from a template, worked out once per template (the district re-checks every result)."""
    hit = _RULES.get(id(template))
    if hit is not None and hit[0] is template:
        return hit[1]
    rules = _TemplateRules(
        names=frozenset(template.field_map),
        limits=tuple((f.name, f.upper_bound()) for f in template.fields),
        checks=tuple((c, c.fields) for c in template.checks))
    _RULES[id(template)] = (template, rules)  # holding the template keeps its id from being reused
    return rules


def recheck_arithmetic(result: ResultPayload, template: Template) -> list[str]:
    """Re-run the template's checks and max values. Returns problems; empty when the result stands.

    An `ok` result must have every field and every check good. A `review` result may carry failing
    checks, but the checks it reports must be the ones that really fail.
    """
    problems: list[str] = []
    rules = _rules(template)
    if result.fields.keys() != rules.names:
        names, got = rules.names, set(result.fields)
        missing, extra = sorted(names - got), sorted(got - names)
        return [f"fields do not match template {template.id}: missing {missing}, unknown {extra}"]
    values = result.values()
    ok = result.status == "ok"
    for name, limit in rules.limits:
        v = values[name]
        if v is None:
            if ok:
                problems.append(f"{name} has no value in an ok result")
            continue
        if v > limit:
            problems.append(f"{name}={v} is above its maximum {limit}")
    claimed = {c.id: c.passed for c in result.checks}
    for check, reads in rules.checks:
        if any(values[n] is None for n in reads):
            continue
        holds = check.holds(values)  # type: ignore[arg-type]
        if ok and not holds:
            problems.append(f"check {check.id} fails in an ok result")
        elif check.id in claimed and claimed[check.id] != holds:
            problems.append(f"check {check.id} reported {'passed' if claimed[check.id] else 'failed'} but it "
                            f"{'holds' if holds else 'fails'}")
    if result.officer_slip and (ok or all(c.passed for c in result.checks)):
        problems.append("officer_slip is set but no check fails in a review result")
    return problems
