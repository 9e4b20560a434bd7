"""What the reader returns: plain, serialisable values (the contract with validation, signing and the CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tpskit.officer import OfficerMessage

Status = Literal["ok", "review", "rejected"]
FieldStatus = Literal["ok", "review", "resolved_by_checks"]

#: Class index the digit model uses for a box with no digit in it (blank, dash, X).
EMPTY = 10


@dataclass
class BoxReading:
    """One digit box: the model's best class (0-9, or None for an empty box) and the runner-up."""

    digit: int | None
    p: float
    alt: int | None
    alt_p: float
    bubble: int | Literal["several", "faint"] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not (k == "bubble" and v is None)}


@dataclass
class FieldReading:
    name: str
    value: int | None
    confidence: float
    status: FieldStatus
    boxes: list[BoxReading] = field(default_factory=list)
    #: What the digits alone said, where checks resolved the field to another value.
    ocr_value: int | None = None
    #: Probability of the digits' own best value (before the checks); used to calibrate the threshold.
    ocr_confidence: float = 0.0
    #: Digits and answer bubbles: "agree", "disagree", or None where the field has no bubbles.
    bubbles: Literal["agree", "disagree", "incomplete"] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": self.value,
            "confidence": round(self.confidence, 6),
            "status": self.status,
            "boxes": [b.to_dict() for b in self.boxes],
        }
        if self.ocr_value is not None and self.ocr_value != self.value:
            out["ocr_value"] = self.ocr_value
        if self.bubbles is not None:
            out["bubbles"] = self.bubbles
        return out


@dataclass(frozen=True)
class CheckResult:
    id: str
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "passed": self.passed}


@dataclass
class ReadingResult:
    photo: str | None
    template: str | None
    form_code: str | None
    tps: str | None
    status: Status
    reason: str | None = None
    message: OfficerMessage | None = None
    fields: dict[str, FieldReading] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: The capture gate's measurements (line contrast, line width, glare, the box grid's reprojection
    #: error in mm under the markers' homography and under the one refitted on the grid, ...).
    gate: dict[str, float] = field(default_factory=dict)

    def values(self) -> dict[str, int | None]:
        return {name: f.value for name, f in self.fields.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "photo": self.photo,
            "template": self.template,
            "form_code": self.form_code,
            "tps": self.tps,
            "status": self.status,
            "reason": self.reason,
            "message": self.message.to_dict() if self.message else None,
            "fields": {name: f.to_dict() for name, f in self.fields.items()},
            "checks": [c.to_dict() for c in self.checks],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "gate": dict(self.gate),
        }
