"""Evidence photos reread by the kit's own reader, for the result page: the rectified sheet the numbers are
drawn on.

The district does not import the kit's code (tests/test_import_directions.py): it runs `tpskit read --json
--debug-dir DIR` as a subprocess, with a timeout. That also keeps an untrusted image, decoded by OpenCV and
libjpeg, out of the service's process: a photo that crashes or hangs the decoder costs one reread. The
output is cached by the photo's SHA-256 (photos never change), so each photo is read at most once.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpskit.events import Event, log_event, register

log = logging.getLogger("tpskit.district.reread")

register(
    Event("district.reread", "info", "An evidence photo was reread by the reader for the dashboard (status, time)."),
    Event("district.reread_failed", "warning", "Rereading an evidence photo failed or timed out; the dashboard shows "
          "the photo without the rectified sheet."),
)

_SHA = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Reread:
    state: str  # done | failed | running
    reading: dict[str, Any] | None = None  # tpskit read --json's object
    sheet: Path | None = None  # the rectified sheet (or the refusal picture) the reader drew
    error: str | None = None


class Rereader:
    """Rereads photos in one background worker (the reader takes a core for a second or two) and calls
    `on_done` when one is ready, so that open pages update."""

    def __init__(self, cache_dir: Path, timeout_s: float, on_done: Callable[[], None] = lambda: None):
        self.cache_dir = Path(cache_dir)
        self.timeout_s = timeout_s
        self.on_done = on_done
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reread")
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def folder(self, sha: str) -> Path:
        if len(sha) != 64 or not set(sha) <= _SHA:
            raise ValueError("not a SHA-256")
        return self.cache_dir / sha

    def cached(self, sha: str) -> Reread | None:
        d = self.folder(sha)
        if (d / "error.txt").exists():
            return Reread("failed", error=(d / "error.txt").read_text())
        if (d / "reading.json").exists():
            sheets = sorted(d.glob("photo.*.png"))
            return Reread("done", json.loads((d / "reading.json").read_text()), sheets[0] if sheets else None)
        return None

    def get(self, sha: str, photo: Callable[[], bytes | None]) -> Reread:
        """The cached reread, or `running` after starting one (`photo` loads the bytes, only then)."""
        got = self.cached(sha)
        if got is not None:
            return got
        with self._lock:
            if sha not in self._running:
                self._running.add(sha)
                self._pool.submit(self._run, sha, photo)
        return Reread("running")

    def reread_now(self, sha: str, jpeg: bytes) -> Reread:
        """Synchronously (benchmarks, tests)."""
        self._run(sha, lambda: jpeg)
        return self.cached(sha) or Reread("failed", error="no output")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, sha: str, photo: Callable[[], bytes | None]) -> None:
        d = self.folder(sha)
        try:
            data = photo()
            if data is None:
                return
            d.mkdir(parents=True, exist_ok=True)
            self._read(d, data)
        except Exception as e:  # never the service's problem: the page says the photo could not be reread
            d.mkdir(parents=True, exist_ok=True)
            (d / "error.txt").write_text(f"{type(e).__name__}: {e}")
            log_event(log, "district.reread_failed", sha256=sha, error=repr(e))
        finally:
            with self._lock:
                self._running.discard(sha)
            self.on_done()

    def _read(self, d: Path, data: bytes) -> None:
        src = d / "photo.jpg"
        src.write_bytes(data)
        cmd = [sys.executable, "-m", "tpskit.cli", "read", "--json", "--debug-dir", str(d), str(src)]
        # One thread for the reader's inference: the service's cores are for ingest.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=self.timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired:
            (d / "error.txt").write_text(f"the reader took more than {self.timeout_s:g} s")
            log_event(log, "district.reread_failed", sha256=d.name, error="timeout")
            return
        finally:
            src.unlink(missing_ok=True)
        lines = [ln for ln in out.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
        if out.returncode not in (0, 3) or not lines:  # 3: read, and refused
            err = out.stderr.decode("utf-8", "replace").strip().splitlines()
            (d / "error.txt").write_text(f"the reader exited {out.returncode}: {(err or ['no output'])[-1][:300]}")
            log_event(log, "district.reread_failed", sha256=d.name, error=f"exit {out.returncode}")
            return
        reading = json.loads(lines[-1])
        tmp = d / "reading.json.tmp"
        tmp.write_text(json.dumps(reading))
        tmp.replace(d / "reading.json")
        log_event(log, "district.reread", sha256=d.name, status=reading.get("status"))
