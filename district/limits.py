"""What one TPS's kits may make the district store, and the disk space the district keeps free.

Quotas are counted per TPS, per clock hour, in the service process that serves the TPS (a TPS's messages
always reach the same process): new submissions, and bytes of new results and photos stored. Refused
messages are recorded one by one up to a number per TPS and hour, then only counted and summarised, so
that a flood of garbage cannot fill the rejections table or the log either.

The disk floor: below `min_free_mb` of free space where the database lives, photos are no longer stored
(a result whose photo arrives is still stored and acknowledged, its ack saying the photo was not kept;
the kit keeps it), so that a full disk never stops the count.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tpskit.district.config import LimitsSection


def _hour(now: float) -> int:
    return int(now // 3600)


@dataclass
class QuotaBook:
    """Per-TPS counters for the current clock hour."""

    limits: LimitsSection
    _hour: int = -1
    submissions: Counter[str] = field(default_factory=Counter)
    stored_bytes: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)

    def _roll(self, now: float | None) -> None:
        h = _hour(time.time() if now is None else now)
        if h != self._hour:
            self._hour = h
            self.submissions.clear()
            self.stored_bytes.clear()
            self.refusals.clear()

    def over(self, tps: str, new_bytes: int, batch_submissions: int = 0, batch_bytes: int = 0,
             now: float | None = None) -> str | None:
        """Why one more new submission of `new_bytes` from `tps` is over its quota, or None; `batch_*` is
        what the current (uncommitted) batch already took for this TPS."""
        self._roll(now)
        lim = self.limits
        if self.submissions[tps] + batch_submissions + 1 > lim.submissions_per_tps_hour:
            return f"more than {lim.submissions_per_tps_hour} new submissions from TPS {tps} this hour"
        so_far = self.stored_bytes[tps] + batch_bytes
        if so_far + new_bytes > lim.bytes_per_tps_hour:
            return (f"more than {lim.bytes_per_tps_hour // 2**20} MB stored for TPS {tps} this hour "
                    f"({so_far // 2**20} MB so far)")
        return None

    def add(self, tps: str, submissions: int, stored_bytes: int, now: float | None = None) -> None:
        """Count what a committed batch stored."""
        self._roll(now)
        self.submissions[tps] += submissions
        self.stored_bytes[tps] += stored_bytes

    def record_refusal(self, tps: str, now: float | None = None) -> bool:
        """Count one refused message; True while it should still be recorded one by one."""
        self._roll(now)
        self.refusals[tps] += 1
        return self.refusals[tps] <= self.limits.refusals_logged_per_tps_hour


@dataclass
class DiskFloor:
    """Free space where the database lives, measured once per batch (one statvfs call)."""

    path: Path
    min_free_mb: int
    below: bool = False
    free_mb: float = float("inf")

    def check(self) -> tuple[bool, bool]:
        """(below the floor now, changed since the last check)."""
        try:
            st = os.statvfs(self.path)
            free_mb = st.f_bavail * st.f_frsize / 2**20
        except OSError:
            free_mb = float("inf")  # a folder we cannot measure: the database itself will say when it is full
        now_below = free_mb < self.min_free_mb
        changed, self.below = now_below != self.below, now_below
        self.free_mb = free_mb
        return now_below, changed
