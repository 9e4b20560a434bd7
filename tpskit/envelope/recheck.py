"""The arithmetic recheck: a verified result's values against its form's maximums and checks, as the
district re-runs them on every result (the kit ran them before it signed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tpskit.envelope.payload import ResultPayload
from tpskit.envelope.verify import VerificationError
from tpskit.forms import Check, Template

#: The fields that count voters: none may be above the TPS's registered voters.
TOTAL_FIELDS = ("pengguna_total", "suara_total")


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


def check_result_content(result: ResultPayload, template: Template | None, registered_voters: int,
                         raw: Mapping[str, Any] | None = None) -> None:
    """Raise `VerificationError` unless a verified result stands on its own content: its form installed
    (`template`, None when not), its arithmetic rechecked, its totals within the TPS's registered voters.
    The district and the national tier both run it: neither trusts the kit's arithmetic."""
    if template is None or template.form_code != result.form_code:
        raise VerificationError("unknown_template", f"template {result.template_id!r} is not installed", raw)
    problems = recheck_arithmetic(result, template)
    if problems:
        raise VerificationError("checks_failed", "; ".join(problems), raw)
    values = result.values()
    over = [f"{n}={values[n]}" for n in TOTAL_FIELDS
            if values.get(n) is not None and values[n] > registered_voters]  # type: ignore[operator]
    if over:
        raise VerificationError("over_registered_voters", f"{', '.join(over)} above the {registered_voters} "
                                f"registered voters of TPS {result.tps}", raw)
