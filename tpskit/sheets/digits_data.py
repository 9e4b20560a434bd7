"""The only handwriting the project trains on, and its fixed train/validation split.

The data file lives outside the repository (see ../shared/data/README.md for its rules of use). The
split is fixed here so that the model card, the sheet generator and the tests all agree: the
validation digits are the only ones ever drawn on generated sheets, tests and benchmarks.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIGITS_DATA_ENV = "TPSKIT_DIGITS_DATA"
DIGITS_DATA_NAME = "handwritten-digits-10k.npz"
# From ../shared/data/README.md; a different file is refused rather than silently trained on.
DIGITS_DATA_SHA256 = "0217e13bd0668deb198aa7d305edbf0331eb89f8a6e7dd226e03d1aa3a9bd4ef"

SPLIT_SEED = 20240214
TRAIN_SIZE = 9_000
VAL_SIZE = 1_000
SPLIT_STRATIFIED = True

_REPO = Path(__file__).resolve().parents[2]


class DigitsDataError(RuntimeError):
    """The handwriting file is missing or is not the one the project was built on."""


@dataclass(frozen=True)
class DigitSplit:
    train_images: np.ndarray  # (9000, 28, 28) uint8, 255 = ink
    train_labels: np.ndarray  # (9000,) uint8
    val_images: np.ndarray  # (1000, 28, 28) uint8
    val_labels: np.ndarray  # (1000,) uint8
    sha256: str
    path: Path


def locate_digits_data() -> Path:
    """`$TPSKIT_DIGITS_DATA`, else `<repo>/../shared/data/handwritten-digits-10k.npz`."""
    env = os.environ.get(DIGITS_DATA_ENV)
    path = Path(env) if env else _REPO.parent / "shared" / "data" / DIGITS_DATA_NAME
    if not path.is_file():
        raise DigitsDataError(
            f"handwritten digit data not found at {path}; set {DIGITS_DATA_ENV} to the path of "
            f"{DIGITS_DATA_NAME} (sha256 {DIGITS_DATA_SHA256})"
        )
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_indices(labels: np.ndarray, val_size: int = VAL_SIZE, seed: int = SPLIT_SEED) -> tuple[
    np.ndarray, np.ndarray
]:
    """Stratified split: each class contributes to validation in proportion to its size."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    counts = np.array([(labels == c).sum() for c in classes])
    exact = counts * val_size / len(labels)
    take = np.floor(exact).astype(int)
    # Largest remainders get the leftover places so the total is exactly val_size.
    for i in np.argsort(-(exact - take), kind="stable")[: val_size - take.sum()]:
        take[i] += 1
    val = []
    for c, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(labels == c)
        val.append(rng.permutation(idx)[:k])
    val_idx = np.sort(np.concatenate(val))
    train_mask = np.ones(len(labels), bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def load_split(path: Path | None = None) -> DigitSplit:
    """Load the data file, verify its checksum and return the fixed 9,000 / 1,000 split."""
    path = Path(path) if path is not None else locate_digits_data()
    if not path.is_file():
        raise DigitsDataError(f"handwritten digit data not found at {path}")
    digest = file_sha256(path)
    if digest != DIGITS_DATA_SHA256:
        raise DigitsDataError(
            f"{path} has sha256 {digest}, expected {DIGITS_DATA_SHA256}: not the project's digit data"
        )
    with np.load(path) as d:
        images, labels = d["images"], d["labels"]
    train_idx, val_idx = split_indices(labels)
    assert len(train_idx) == TRAIN_SIZE and len(val_idx) == VAL_SIZE
    return DigitSplit(
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        val_images=images[val_idx],
        val_labels=labels[val_idx],
        sha256=digest,
        path=path,
    )
