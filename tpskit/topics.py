"""Every MQTT topic of the kits and the district, named and parsed back in one place.

A TPS has three topics: the kit publishes its signed result on `tps/<TPS>/result` and the photo on
`tps/<TPS>/evidence/<submission id>`; the district answers on `tps/<TPS>/ack`. The kit, the district,
the broker's access rules, the benches and the tests all build them here, so a change of scheme is one
edit (and the broker's rules cannot drift from what the two sides publish).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ROOT = "tps"
RESULT = "result"
EVIDENCE = "evidence"
ACK = "ack"

#: One level of any TPS (an MQTT single-level wildcard).
ANY = "+"

Kind = Literal["result", "evidence", "ack"]


def result_topic(tps: str) -> str:
    """Where a kit of `tps` publishes its signed result."""
    return f"{ROOT}/{tps}/{RESULT}"


def evidence_topic(tps: str, submission_id: str) -> str:
    """Where a kit of `tps` publishes the photo of one submission."""
    return f"{ROOT}/{tps}/{EVIDENCE}/{submission_id}"


def evidence_filter(tps: str) -> str:
    """Every photo topic of `tps` (`tps` may be `ANY`)."""
    return evidence_topic(tps, ANY)


def ack_topic(tps: str) -> str:
    """Where the district answers the kits of `tps`."""
    return f"{ROOT}/{tps}/{ACK}"


#: Filters over every TPS: what the district reads and writes.
ALL_RESULTS = result_topic(ANY)
ALL_EVIDENCE = evidence_filter(ANY)
ALL_ACKS = ack_topic(ANY)


def tps_filters(tps: str) -> tuple[str, str]:
    """The (result, evidence) filters of one TPS: what a district process subscribes to for it."""
    return result_topic(tps), evidence_filter(tps)


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic of ours, parsed: its kind, its TPS level and, for evidence, its last level as it
    arrived (the district checks that it is a submission id before it stores anything)."""

    kind: Kind
    tps: str
    submission_id: str = ""

    def __str__(self) -> str:
        if self.kind == RESULT:
            return result_topic(self.tps)
        if self.kind == EVIDENCE:
            return evidence_topic(self.tps, self.submission_id)
        return ack_topic(self.tps)


def parse(topic: str) -> Topic | None:
    """The `Topic` that `topic` names, or None for a topic that is not one of ours (another root,
    another kind, a level too many or too few, an empty or wildcard TPS level). An evidence topic's
    last level is returned as it is, even empty: a kit may publish that, and the district refuses it
    as malformed rather than ignoring it."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != ROOT or parts[1] in ("", ANY, "#"):
        return None
    tps, kind = parts[1], parts[2]
    if len(parts) == 3 and kind in (RESULT, ACK):
        return Topic(kind, tps)  # type: ignore[arg-type]
    if len(parts) == 4 and kind == EVIDENCE:
        return Topic(EVIDENCE, tps, parts[3])
    return None
