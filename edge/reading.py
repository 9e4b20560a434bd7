"""The reading the officer confirms: one typed value from the reader's result to the signer.

The kit daemon makes a `Reading` from the reader's result, keeps it (on disk too) while the officer looks,
applies the officer's corrections as operations that return a new `Reading`, and hands it to the signer
(edge/submit.py), which turns it into the signed payload. A correction keeps what the reader offered (the
OCR original, `ocr_value`) and re-runs the form's checks, so the status follows the values.

The JSON form (`to_dict`, `from_dict`) is what `tpskit read --json` prints (the reader's diagnostics in
it, such as boxes and timings, are ignored), what `tpskit kit submit` reads, and what the control socket
shows a touch page.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tpskit.forms import Template

FieldStatus = Literal["ok", "review", "resolved_by_checks", "corrected"]
#: Field statuses that may travel in an `ok` result.
GOOD: tuple[FieldStatus, ...] = ("ok", "resolved_by_checks", "corrected")


class ReadingError(ValueError):
    """Not a reading that can be confirmed and signed; the message is for the officer or technician."""


class CorrectionError(ValueError):
    """A correction the kit refuses; the message is for the officer or the touch page."""


class _Frozen(BaseModel):
    # Unknown keys are ignored: the reader's JSON carries diagnostics (boxes, timings, gate) the signer has
    # no use for. Frozen: a change (a correction) is a new value; nothing here mutates a `fields` dict.
    model_config = ConfigDict(frozen=True, extra="ignore")


class FieldValue(_Frozen):
    """One field: the value adopted, how it was reached, the reader's confidence, and `ocr_value`: for a
    field the officer corrected, what the reader had offered (signed with it); for a field the checks
    resolved, what the digits alone said (shown, not signed)."""

    value: int | None
    status: FieldStatus = "review"
    confidence: float = 0.0
    ocr_value: int | None = None


class CheckOutcome(_Frozen):
    id: str
    passed: bool


class Reading(_Frozen):
    """A readable sheet (status ok or review) as the officer is asked to confirm it."""

    template: str
    form_code: str
    tps: str
    status: Literal["ok", "review"]
    fields: dict[str, FieldValue]
    checks: tuple[CheckOutcome, ...] = ()
    #: The digit model that read it.
    model: str | None = None
    #: The officer confirmed the sheet's arithmetic is written this way (a check fails on the paper itself).
    officer_slip: bool = False

    # ------------------------------------------------------------------ making one
    @classmethod
    def from_result(cls, result: Any, model: str | None) -> Reading:
        """From the reader's `ReadingResult` (status ok or review) and the model version that read it."""
        return cls.from_dict({**result.to_dict(), "model": model})

    @classmethod
    def from_dict(cls, data: Any) -> Reading:
        """From the JSON form; ReadingError says what is wrong (a refused sheet, a missing field...)."""
        if not isinstance(data, dict):
            raise ReadingError("a reading is a JSON object (the output of `tpskit read --json`)")
        status = data.get("status")
        if status not in ("ok", "review"):
            raise ReadingError(f"a reading with status {status!r} cannot be signed (only ok or review)")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ReadingError(f"not a reading: {where}: {first['msg']}") from e

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    # ------------------------------------------------------------------ what the officer sees and does
    def needs_review(self) -> list[str]:
        """The fields the officer must look at, in form order."""
        return [n for n, f in self.fields.items() if f.status not in GOOD]

    def values(self) -> dict[str, int | None]:
        return {n: f.value for n, f in self.fields.items()}

    def failing_checks(self) -> list[str]:
        return [c.id for c in self.checks if not c.passed]

    def confirmable(self) -> bool:
        """What the touch page's Confirm needs: every check passes, or the officer marked the failing ones as
        the sheet's own arithmetic (officer_slip)."""
        return not self.failing_checks() or self.officer_slip

    def with_slip(self, on: bool) -> Reading:
        """The officer marks (or unmarks) the failing checks as written that way on the sheet."""
        return self.model_copy(update={"officer_slip": bool(on and self.failing_checks())})

    def corrected(self, template: Template, name: str, value: int, registered_voters: int | None = None
                  ) -> Reading:
        """The officer's value for one field: status `corrected`, the OCR original kept (a second
        correction keeps the first original), the checks re-run."""
        if name not in template.field_map or name not in self.fields:
            raise CorrectionError(f"no field {name!r} on form {template.id}; fields: "
                                  f"{', '.join(f.name for f in template.fields)}")
        limit = template.field_map[name].upper_bound(registered_voters)
        if not 0 <= value <= limit:
            raise CorrectionError(f"{name} must be a whole number from 0 to {limit}")
        old = self.fields[name]
        original = old.ocr_value if old.status == "corrected" else old.value
        new = old.model_copy(update={"value": int(value), "status": "corrected", "ocr_value": original})
        return self.model_copy(update={"fields": {**self.fields, name: new}}).rechecked(template)

    def rechecked(self, template: Template) -> Reading:
        """The template's checks re-run over the current values, and the status they imply: `ok` only when
        every field is ok, resolved or corrected with a value and every check passes; otherwise `review`."""
        values = self.values()
        checks = tuple(CheckOutcome(id=ch.id, passed=bool(all(values.get(n) is not None for n in ch.fields)
                                                          and ch.holds(values)))  # type: ignore[arg-type]
                       for ch in template.checks)
        all_good = all(f.status in GOOD and f.value is not None for f in self.fields.values())
        status = "ok" if all_good and all(c.passed for c in checks) else "review"
        # A slip mark stands for the checks failing now: once they pass, there is no slip to flag.
        slip = self.officer_slip and not all(c.passed for c in checks)
        return self.model_copy(update={"checks": checks, "status": status, "officer_slip": slip})

