"""Official form templates (`tps-form-template/1`) and the arithmetic they imply.

Templates are the authority's data, read as-is: the kit must read any template in this schema without
code changes. The models refuse unknown keys at the top level of the parts we rely on, so that a
misspelt template fails loudly at load time instead of misreading a sheet on election night.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from dataclasses import fields as dataclass_fields
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

SCHEMA = "tps-form-template/1"
#: ASCII digits only (\d would admit other scripts' digits) and the whole string (no trailing newline).
TPS_RE = re.compile(r"[0-9]{13}")


class TemplateError(ValueError):
    """A template file that cannot be used, with the file and the reason."""


class SchemaError(ValueError):
    """A value the template schema refuses: where it is (`loc`, keys and indices from the top) and why."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}" if loc else msg)
        self.loc, self.msg = loc, msg


# The schema is checked by the small converters below, not by pydantic: `tpskit read` loads templates and
# nothing else that needs pydantic, whose import and model building cost it 16 MB of its 137 MB peak
# (issue 8: <= 120 MB). Each converter takes a value and where it is, and returns it as the model keeps it.
_Conv = Callable[[Any, tuple], Any]


def _number(gt: float | None = None, ge: float | None = None) -> _Conv:
    def conv(v: Any, loc: tuple) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SchemaError(loc, "Input should be a valid number")
        try:
            v = float(v)
        except OverflowError:
            raise SchemaError(loc, "Input should be a finite number") from None
        if gt is not None and not v > gt:
            raise SchemaError(loc, f"Input should be greater than {gt:g}")
        if ge is not None and not v >= ge:
            raise SchemaError(loc, f"Input should be greater than or equal to {ge:g}")
        return v
    return conv


def _integer(ge: int | None = None, le: int | None = None) -> _Conv:
    def conv(v: Any, loc: tuple) -> int:
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            v = int(v)  # 3.0 is 3, as pydantic's lax mode had it
        if isinstance(v, bool) or not isinstance(v, int):
            raise SchemaError(loc, "Input should be a valid integer")
        if ge is not None and v < ge:
            raise SchemaError(loc, f"Input should be greater than or equal to {ge}")
        if le is not None and v > le:
            raise SchemaError(loc, f"Input should be less than or equal to {le}")
        return v
    return conv


def _string(v: Any, loc: tuple) -> str:
    if not isinstance(v, str):
        raise SchemaError(loc, "Input should be a valid string")
    return v


def _boolean(v: Any, loc: tuple) -> bool:
    if not isinstance(v, bool):
        raise SchemaError(loc, "Input should be a valid boolean")
    return v


def _literal(*choices: str) -> _Conv:
    def conv(v: Any, loc: tuple) -> str:
        if not isinstance(v, str) or v not in choices:
            raise SchemaError(loc, "Input should be " + " or ".join(repr(c) for c in choices))
        return v
    return conv


def _optional(inner: _Conv) -> _Conv:
    return lambda v, loc: None if v is None else inner(v, loc)


def _tuple(item: _Conv, length: int | None = None) -> _Conv:
    def conv(v: Any, loc: tuple) -> tuple:
        if not isinstance(v, list | tuple):
            raise SchemaError(loc, "Input should be a valid list")
        if length is not None and len(v) != length:
            raise SchemaError(loc, f"Input should have {length} items, not {len(v)}")
        return tuple(item(x, (*loc, i)) for i, x in enumerate(v))
    return conv


def _model(cls: type[_Model]) -> _Conv:
    def conv(v: Any, loc: tuple) -> _Model:
        if isinstance(v, cls):
            return v
        try:
            return cls.model_validate(v)
        except SchemaError as e:
            raise SchemaError((*loc, *e.loc), e.msg) from None
    return conv


class _Model:
    """A frozen dataclass checked against the schema on construction: every field converted (a list becomes
    a tuple, an int a float where a float is wanted) or refused with where and why; unknown keys refused.
    Offers the three pydantic methods the project uses on templates (model_validate, model_dump,
    model_dump_json)."""

    #: Field name -> converter; every field of the dataclass has one.
    _conv: ClassVar[dict[str, _Conv]]
    #: Field name -> its key in the template file, where they differ.
    _alias: ClassVar[dict[str, str]] = {}
    #: Unknown keys are kept (in `model_extra`) instead of refused.
    _extra_allowed: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for name, conv in self._conv.items():
            object.__setattr__(self, name, conv(getattr(self, name), (self._alias.get(name, name),)))
        try:
            self._validate()
        except SchemaError:
            raise
        except ValueError as e:
            raise SchemaError((), f"Value error, {e}") from None

    def _validate(self) -> None:
        """Checks across fields; raises ValueError."""

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise SchemaError((), f"Input should be a valid dictionary or instance of {cls.__name__}")
        keys = {cls._alias.get(n, n): n for n in cls._conv}
        extra = {k: v for k, v in data.items() if k not in keys}
        if extra and not cls._extra_allowed:
            raise SchemaError((next(iter(extra)),), "Extra inputs are not permitted")
        defaults = {f.name for f in dataclass_fields(cls) if f.default is not MISSING}
        kw = {name: data[key] for key, name in keys.items() if key in data}
        for key, name in keys.items():
            if key not in data and name not in defaults:
                raise SchemaError((key,), "Field required")
        if extra:
            kw["model_extra"] = tuple(extra.items())
        return cls(**kw)

    def model_dump(self, *, by_alias: bool = False, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        def dump(v: Any) -> Any:
            if isinstance(v, _Model):
                return v.model_dump(by_alias=by_alias, mode=mode)
            if isinstance(v, tuple):
                items = [dump(x) for x in v]
                return items if mode == "json" else tuple(items)
            return v
        out = {(self._alias.get(n, n) if by_alias else n): dump(getattr(self, n)) for n in self._conv}
        out.update(getattr(self, "model_extra", ()))
        return out

    def model_dump_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, mode="json"), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Page(_Model):
    width_mm: float
    height_mm: float
    _conv: ClassVar[dict[str, _Conv]] = {
        "width_mm": _number(gt=0),
        "height_mm": _number(gt=0),
    }


@dataclass(frozen=True)
class Marker(_Model):
    id: int
    x_mm: float
    y_mm: float
    corner: Literal["top-left", "top-right", "bottom-right", "bottom-left"]
    _conv: ClassVar[dict[str, _Conv]] = {
        "id": _integer(ge=0),
        "x_mm": _number(),
        "y_mm": _number(),
        "corner": _literal("top-left", "top-right", "bottom-right", "bottom-left"),
    }


@dataclass(frozen=True)
class Markers(_Model):
    dictionary: str
    size_mm: float
    quiet_zone_mm: float
    items: tuple[Marker, Marker, Marker, Marker]
    _conv: ClassVar[dict[str, _Conv]] = {
        "dictionary": _string,
        "size_mm": _number(gt=0),
        "quiet_zone_mm": _number(ge=0),
        "items": _tuple(_model(Marker), 4),
    }

    def _validate(self) -> None:
        corners = {m.corner for m in self.items}
        if len(corners) != 4 or len({m.id for m in self.items}) != 4:
            raise ValueError("markers.items needs four distinct ids, one per corner")

    def by_corner(self, corner: str) -> Marker:
        return next(m for m in self.items if m.corner == corner)


@dataclass(frozen=True)
class QrSpec(_Model):
    x_mm: float
    y_mm: float
    size_mm: float
    payload: str
    note: str | None = None
    _conv: ClassVar[dict[str, _Conv]] = {
        "x_mm": _number(),
        "y_mm": _number(),
        "size_mm": _number(gt=0),
        "payload": _string,
        "note": _optional(_string),
    }


@dataclass(frozen=True)
class Box(_Model):
    x_mm: float
    y_mm: float
    w_mm: float
    h_mm: float
    _conv: ClassVar[dict[str, _Conv]] = {
        "x_mm": _number(),
        "y_mm": _number(),
        "w_mm": _number(gt=0),
        "h_mm": _number(gt=0),
    }


@dataclass(frozen=True)
class Bubbles(_Model):
    d_mm: float
    rows: tuple[tuple[tuple[float, float], ...], ...]
    _conv: ClassVar[dict[str, _Conv]] = {
        "d_mm": _number(gt=0),
        "rows": _tuple(_tuple(_tuple(_number(), 2))),
    }

    def _validate(self) -> None:
        if any(len(r) != 10 for r in self.rows):
            raise ValueError("bubbles.rows: every row needs ten centres, for the digits 0..9")


@dataclass(frozen=True)
class FieldSpec(_Model):
    name: str
    label: str
    section: str
    digits: int
    boxes: tuple[Box, ...]
    max_value: int | None = None
    bubbles: Bubbles | None = None
    _conv: ClassVar[dict[str, _Conv]] = {
        "name": _string,
        "label": _string,
        "section": _string,
        "digits": _integer(ge=1, le=6),
        "boxes": _tuple(_model(Box)),
        "max_value": _optional(_integer(ge=0)),
        "bubbles": _optional(_model(Bubbles)),
    }

    def _validate(self) -> None:
        if len(self.boxes) != self.digits:
            raise ValueError(f"field {self.name}: {len(self.boxes)} boxes for {self.digits} digits")
        if self.bubbles is not None and len(self.bubbles.rows) != self.digits:
            raise ValueError(f"field {self.name}: one bubble row per box is required")

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


@dataclass(frozen=True)
class Check(_Model):
    id: str
    sum: tuple[str, ...]
    equals: tuple[str, ...] | None = None
    at_most: tuple[str, ...] | None = None
    _conv: ClassVar[dict[str, _Conv]] = {
        "id": _string,
        "sum": _tuple(_string),
        "equals": _optional(_tuple(_string)),
        "at_most": _optional(_tuple(_string)),
    }

    def _validate(self) -> None:
        if (self.equals is None) == (self.at_most is None):
            raise ValueError(f"check {self.id}: give exactly one of 'equals' or 'at_most'")

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


@dataclass(frozen=True)
class Text(_Model):
    text: str
    x_mm: float
    y_mm: float
    size_pt: float = 8.0
    bold: bool = False
    #: Keys this schema does not know, kept as (key, value) pairs: printed text may carry more.
    model_extra: tuple[tuple[str, Any], ...] = ()
    _conv: ClassVar[dict[str, _Conv]] = {
        "text": _string,
        "x_mm": _number(),
        "y_mm": _number(),
        "size_pt": _number(),
        "bold": _boolean,
    }
    _extra_allowed: ClassVar[bool] = True

    def __getattr__(self, name: str) -> Any:
        for k, v in self.__dict__.get("model_extra", ()):
            if k == name:
                return v
        raise AttributeError(name)


@dataclass(frozen=True)
class Template(_Model):
    """One official form. Unknown top-level keys are kept out."""

    schema_: Literal["tps-form-template/1"]
    id: str
    title: str
    form_code: str
    page: Page
    markers: Markers
    qr: QrSpec
    fields: tuple[FieldSpec, ...]
    checks: tuple[Check, ...] = ()
    texts: tuple[Text, ...] = ()
    _conv: ClassVar[dict[str, _Conv]] = {
        "schema_": _literal(SCHEMA),
        "id": _string,
        "title": _string,
        "form_code": _string,
        "page": _model(Page),
        "markers": _model(Markers),
        "qr": _model(QrSpec),
        "fields": _tuple(_model(FieldSpec)),
        "checks": _tuple(_model(Check)),
        "texts": _tuple(_model(Text)),
    }
    _alias: ClassVar[dict[str, str]] = {"schema_": "schema"}

    def _validate(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
        for c in self.checks:
            unknown = [n for n in c.fields if n not in names]
            if unknown:
                raise ValueError(f"check {c.id} names unknown fields {unknown}")

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
    except SchemaError as e:
        raise TemplateError(f"{path}: {e}") from e


def builtin_templates_dir() -> Path:
    """The copies of the official templates that ship inside the package (beside this module; not through
    importlib.resources, whose import, tempfile and zipfile with it, cost `tpskit read` 0.9 MB)."""
    return Path(__file__).resolve().parent / "templates"


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
