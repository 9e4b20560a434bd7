"""What the gate saw on one photo, kept for the debug image of a refusal (and of a reading).

A `Trace` is created per `read_sheet` call and filled as the pipeline goes; it is only drawn when the caller
passed a debug sink. `Refused` carries the reason, the message's parameters and the measurement that
crossed its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Measure:
    """One gate measurement against its threshold: refused when `value` is on the wrong side of it."""

    name: str
    value: float
    threshold: float
    #: "below": refused when value < threshold; "above": refused when value > threshold.
    refuse_when: str
    unit: str = ""

    @property
    def failed(self) -> bool:
        return self.value < self.threshold if self.refuse_when == "below" else self.value > self.threshold

    def text(self) -> str:
        op = "<" if self.refuse_when == "below" else ">"
        ok = op if self.failed else {"<": ">=", ">": "<="}[op]
        return f"{self.name} {self.value:.3g}{self.unit} {ok} {self.threshold:.3g}{self.unit}"


@dataclass
class Trace:
    """The marker search and the measured regions of one photo (working-image pixels unless said)."""

    #: Working image shape (h, w).
    shape: tuple[int, int] = (0, 0)
    #: Marker id -> its corners where found by the search (4, 2).
    markers_found: dict[int, np.ndarray] = field(default_factory=dict)
    #: Marker id -> its corners where the other markers put it, confirmed by its bit pattern.
    markers_confirmed: dict[int, np.ndarray] = field(default_factory=dict)
    #: Marker id -> (predicted corners, cells matching) for markers not seen; outside the frame or covered.
    markers_missing: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict)
    #: Page corner name of each marker id.
    corner_names: dict[int, str] = field(default_factory=dict)
    #: Every measurement made, in order.
    measures: list[Measure] = field(default_factory=list)
    #: Boxes (page mm rectangles) whose measurement failed, with the failing value: drawn in red.
    bad_boxes: list[tuple[tuple[float, float, float, float], str]] = field(default_factory=list)
    #: Page -> working image homography once known, with the page size (mm).
    homography: np.ndarray | None = None
    page_mm: tuple[float, float] | None = None

    def measure(self, m: Measure) -> Measure:
        self.measures.append(m)
        return m


class Refused(Exception):
    """A capture refused: `reason` (messages.py), message parameters, and the measure that decided."""

    def __init__(self, reason: str, measure: Measure | None = None, **params: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.params = params
        self.measure = measure
