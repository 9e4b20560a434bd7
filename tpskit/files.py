"""Writing a file so that a crash or power cut leaves either the old file or the new one, never half."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644, *, durable: bool = False) -> None:
    """Write `data` to a temporary file beside `path` and rename it over `path`. `durable` also flushes it
    to the disk before the rename (a file the kit must find again after a power cut)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
