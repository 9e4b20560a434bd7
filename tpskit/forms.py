"""Official form templates (`tps-form-template/1`) and the arithmetic they imply.

Templates are the authority's data, read as-is: the kit must read any template in this schema without
code changes. The models refuse unknown keys at the top level of the parts we rely on, so that a
misspelt template fails loudly at load time instead of misreading a sheet on election night.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA = "tps-form-template/1"
#: ASCII digits only (\d would admit other scripts' digits) and the whole string (no trailing newline).
TPS_RE = re.compile(r"[0-9]{13}")


class TemplateError(ValueError):
    """A template file that cannot be used, with the file and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Page(_Strict):
    width_mm: float = Field(gt=0)
    height_mm: float = Field(gt=0)


class Marker(_Strict):
    id: int = Field(ge=0)
    x_mm: float
    y_mm: float
    corner: Literal["top-left", "top-right", "bottom-right", "bottom-left"]


class Markers(_Strict):
    dictionary: str
    size_mm: float = Field(gt=0)
    quiet_zone_mm: float = Field(ge=0)
    items: tuple[Marker, Marker, Marker, Marker]

    @model_validator(mode="after")
    def _four_distinct_corners(self) -> Markers:
        corners = {m.corner for m in self.items}
        if len(corners) != 4 or len({m.id for m in self.items}) != 4:
            raise ValueError("markers.items needs four distinct ids, one per corner")
        return self

    def by_corner(self, corner: str) -> Marker:
        return next(m for m in self.items if m.corner == corner)


class QrSpec(_Strict):
    x_mm: float
    y_mm: float
    size_mm: float = Field(gt=0)
    payload: str
    note: str | None = None


class Box(_Strict):
    x_mm: float
    y_mm: float
    w_mm: float = Field(gt=0)
    h_mm: float = Field(gt=0)


class Bubbles(_Strict):
    d_mm: float = Field(gt=0)
    rows: tuple[tuple[tuple[float, float], ...], ...]

    @model_validator(mode="after")
    def _ten_per_row(self) -> Bubbles:
        if any(len(r) != 10 for r in self.rows):
            raise ValueError("bubbles.rows: every row needs ten centres, for the digits 0..9")
        return self


class FieldSpec(_Strict):
    name: str
    label: str
    section: str
    digits: int = Field(ge=1, le=6)
    boxes: tuple[Box, ...]
    max_value: int | None = Field(default=None, ge=0)
    bubbles: Bubbles | None = None

    @model_validator(mode="after")
    def _boxes_match_digits(self) -> FieldSpec:
        if len(self.boxes) != self.digits:
            raise ValueError(f"field {self.name}: {len(self.boxes)} boxes for {self.digits} digits")
        if self.bubbles is not None and len(self.bubbles.rows) != self.digits:
            raise ValueError(f"field {self.name}: one bubble row per box is required")
        return self

    @property
    def capacity(self) -> int:
        """Largest value the boxes can hold (999 for three boxes)."""
        return 10**self.digits - 1

    def upper_bound(self, registered_voters: int | None = None) -> int:
        """Largest value allowed: the boxes' capacity and the printed max_value, which the TPS's own
        registered voters (from the voter registry, at provisioning) tighten further."""
        upper = self.capacity
        if self.max_value is not None:
            upper = min(upper, self.max_value)
            if registered_voters is not None:
                upper = min(upper, registered_voters)
        return upper


class Check(_Strict):
    id: str
    sum: tuple[str, ...]
    equals: tuple[str, ...] | None = None
    at_most: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _one_relation(self) -> Check:
        if (self.equals is None) == (self.at_most is None):
            raise ValueError(f"check {self.id}: give exactly one of 'equals' or 'at_most'")
        return self

    @property
    def relation(self) -> Literal["equals", "at_most"]:
        return "equals" if self.equals is not None else "at_most"

    @property
    def rhs(self) -> tuple[str, ...]:
        return self.equals if self.equals is not None else self.at_most  # type: ignore[return-value]

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.sum, *self.rhs)

    def holds(self, values: Mapping[str, int]) -> bool:
        left = sum(values[n] for n in self.sum)
        right = sum(values[n] for n in self.rhs)
        return left == right if self.relation == "equals" else left <= right


class Text(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    text: str
    x_mm: float
    y_mm: float
    size_pt: float = 8.0
    bold: bool = False


class Template(BaseModel):
    """One official form. Unknown top-level keys are kept out (extra=forbid)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: Literal["tps-form-template/1"] = Field(alias="schema")
    id: str
    title: str
    form_code: str
    page: Page
    markers: Markers
    qr: QrSpec
    fields: tuple[FieldSpec, ...]
    checks: tuple[Check, ...] = ()
    texts: tuple[Text, ...] = ()

    @model_validator(mode="after")
    def _names_resolve(self) -> Template:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
        for c in self.checks:
            unknown = [n for n in c.fields if n not in names]
            if unknown:
                raise ValueError(f"check {c.id} names unknown fields {unknown}")
        return self

    @cached_property
    def field_map(self) -> dict[str, FieldSpec]:
        return {f.name: f for f in self.fields}

    def qr_text(self, tps: str) -> str:
        """The QR payload printed on this form for one TPS."""
        return self.qr.payload.format(form_code=self.form_code, tps=tps)


@dataclass(frozen=True)
class QrPayload:
    form_code: str
    tps: str


def parse_qr_payload(text: str) -> QrPayload | None:
    """Parse `TPSFORM/1;form=PPWP;tps=3201012001001`; None when it is not one of ours."""
    parts = text.strip().split(";")
    if not parts or parts[0] != "TPSFORM/1":
        return None
    kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    form, tps = kv.get("form"), kv.get("tps")
    if not form or not tps or not TPS_RE.fullmatch(tps):
        return None
    return QrPayload(form_code=form, tps=tps)


def valid_tps(code: str) -> bool:
    """A TPS code is 13 digits: 10-digit village code then the 3-digit TPS number."""
    return bool(TPS_RE.fullmatch(code))


def load_template(path: Path) -> Template:
    try:
        return Template.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
    except UnicodeDecodeError as e:  # found by tests/fuzz: it escaped as a traceback
        raise TemplateError(f"{path}: cannot read template: not UTF-8 text (byte {e.start})") from e
    except RecursionError as e:
        raise TemplateError(f"{path}: cannot read template: JSON nested too deep") from e
    except (OSError, json.JSONDecodeError) as e:
        raise TemplateError(f"{path}: cannot read template: {e}") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TemplateError(f"{path}: {where}: {first['msg']}") from e


def builtin_templates_dir() -> Path:
    """The copies of the official templates that ship inside the package."""
    return Path(str(resources.files("tpskit") / "templates"))


def load_templates(directory: Path | None = None) -> dict[str, Template]:
    """All templates in a folder, keyed by form code (the QR names the form by its code)."""
    directory = Path(directory) if directory else builtin_templates_dir()
    out: dict[str, Template] = {}
    for path in sorted(directory.glob("*.json")):
        t = load_template(path)
        if t.form_code in out:
            raise TemplateError(f"{path}: form code {t.form_code} is already used by {out[t.form_code].id}")
        out[t.form_code] = t
    if not out:
        raise TemplateError(f"{directory}: no *.json templates found")
    return out


def template_by_id(templates: Iterable[Template], template_id: str) -> Template | None:
    return next((t for t in templates if t.id == template_id), None)
