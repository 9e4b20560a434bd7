"""The full handwriting file the model trains on, and its fixed train/validation split (training only).

The 10,000-digit file is not part of the repository (see `models/README.md`): set `TPSKIT_DIGITS_DATA` to
its path, or keep the development checkout's `../shared/data/` beside the repository. The split's 1,000
validation digits ship with the repository (`tpskit/sheets/data/`); `python models/training/digits_split.py
--check` proves the shipped copy is exactly this split, and `--export` writes it again.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tpskit.sheets import digits_data

DIGITS_DATA_ENV = "TPSKIT_DIGITS_DATA"
DIGITS_DATA_NAME = "handwritten-digits-10k.npz"
# From the data's README; a different file is refused rather than silently trained on.
DIGITS_DATA_SHA256 = "0217e13bd0668deb198aa7d305edbf0331eb89f8a6e7dd226e03d1aa3a9bd4ef"

SPLIT_SEED = 20240214
TRAIN_SIZE = 9_000
VAL_SIZE = digits_data.VALIDATION_SIZE
SPLIT_STRATIFIED = True

_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DigitSplit:
    train_images: np.ndarray  # (9000, 28, 28) uint8, 255 = ink
    train_labels: np.ndarray  # (9000,) uint8
    val_images: np.ndarray  # (1000, 28, 28) uint8
    val_labels: np.ndarray  # (1000,) uint8
    sha256: str
    path: Path


def locate_digits_data() -> Path:
    """`$TPSKIT_DIGITS_DATA`, else the development checkout's `<repo>/../shared/data/handwritten-digits-10k.npz`."""
    env = os.environ.get(DIGITS_DATA_ENV)
    path = Path(env) if env else _REPO.parent / "shared" / "data" / DIGITS_DATA_NAME
    if not path.is_file():
        raise digits_data.DigitsDataError(
            f"handwritten digit data not found at {path}; set {DIGITS_DATA_ENV} to the path of "
            f"{DIGITS_DATA_NAME} (sha256 {DIGITS_DATA_SHA256}); only training needs it"
        )
    return path


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
    """Load the full data file, verify its checksum and return the fixed 9,000 / 1,000 split."""
    path = Path(path) if path is not None else locate_digits_data()
    if not path.is_file():
        raise digits_data.DigitsDataError(f"handwritten digit data not found at {path}")
    digest = digits_data.file_sha256(path)
    if digest != DIGITS_DATA_SHA256:
        raise digits_data.DigitsDataError(
            f"{path} has sha256 {digest}, expected {DIGITS_DATA_SHA256}: not the project's digit data")
    with np.load(path) as d:
        images, labels = d["images"], d["labels"]
    train_idx, val_idx = split_indices(labels)
    assert len(train_idx) == TRAIN_SIZE and len(val_idx) == VAL_SIZE
    return DigitSplit(train_images=images[train_idx], train_labels=labels[train_idx],
                      val_images=images[val_idx], val_labels=labels[val_idx], sha256=digest, path=path)


def shipped_matches_split(split: DigitSplit) -> bool:
    """The repository's validation digits are exactly this split's validation digits, in order."""
    images, labels = digits_data.load_validation_digits()
    return np.array_equal(images, split.val_images) and np.array_equal(labels, split.val_labels)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 unless the shipped validation digits are the split's")
    ap.add_argument("--export", type=Path, help="write the split's validation digits to this .npz")
    args = ap.parse_args(argv)
    split = load_split()
    if args.export:
        np.savez_compressed(args.export, images=split.val_images, labels=split.val_labels)
        print(f"wrote {args.export} (sha256 {digits_data.file_sha256(args.export)})")
    if args.check:
        ok = shipped_matches_split(split)
        print("shipped validation digits match the split" if ok else "shipped validation digits DIFFER from the split")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
