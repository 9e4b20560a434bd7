"""The contract between the reader and the digit model: one printed box crop -> one 28x28 ink image.

The training script feeds its synthetic boxes through exactly these functions, so anything the
reader hands over must be cropped the same way: the OUTER edge of the printed box lines, as given by
the template's box x/y/w/h, rectified at about BOX_PX_PER_MM. Registration may be off by up to
~0.7 mm, so the printed lines can sit a little inside the crop or partly outside it.

What happens to a crop:
1. paper level per pixel from a max filter wider than any pen stroke (follows uneven light and a
   shadow edge better than one global level), relative darkness = 1 - gray / paper;
2. printed box lines are suppressed: in a band along each edge, rows (columns) that are dark across
   most of the box width (height) are zeroed. Handwriting that crosses a line keeps everything but
   the line's own pixels; a digit stroke is never that long. Remnants are left to the model, which is
   trained on them;
3. INTER_AREA resize to 28x28, then contrast from a high percentile of the darkness with a floor, so
   faint blue and dark black ballpoint both come out strong while an empty box stays near 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

BOX_PX_PER_MM = 6.0
MODEL_SIZE = 28

_PAPER_KERNEL_MM = 2.2  # wider than the thickest pen stroke (~1 mm) the officers use
_LINE_BAND_MM = 1.6  # printed line (<= 0.6 mm) + registration error (~0.7 mm) + margin
_LINE_DARK = 0.25  # relative darkness counting as "printed" when looking for lines
_LINE_FILL = 0.6  # fraction of a row/column that must be dark to be a printed line
_FLOOR = 0.05  # darkness below this is paper texture, noise, JPEG ringing
_CONTRAST_MIN = 0.35  # a box never gets amplified more than this; empty boxes stay dark
_CONTRAST_PCT = 99.0


def _paper_kernel(px_per_mm: float) -> np.ndarray:
    k = max(3, round(_PAPER_KERNEL_MM * px_per_mm) | 1)
    return cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))


def _darkness(stack: np.ndarray) -> np.ndarray:
    """(H, W, N) float32 gray (any scale) -> relative darkness in [0, 1] against a local paper level."""
    # Max filter = brightest pixel within ~2 mm: paper, since no pen stroke is that wide. It follows
    # uneven light and most of a shadow edge; the ratio makes the result independent of exposure.
    paper = cv2.dilate(stack, _paper_kernel(BOX_PX_PER_MM), borderType=cv2.BORDER_REPLICATE)
    ratio = cv2.divide(stack, paper).reshape(stack.shape)  # <= 1; 0 where paper is 0 (black crop)
    return np.subtract(1.0, ratio, out=ratio)


def _suppress_lines(dark: np.ndarray) -> None:
    """Zero printed rows/columns near the edges in place. dark: (H, W, N)."""
    h, w = dark.shape[:2]
    band = max(2, round(_LINE_BAND_MM * BOX_PX_PER_MM))
    mask = dark > _LINE_DARK
    rows = mask.mean(axis=1)  # (H, N)
    cols = mask.mean(axis=0)  # (W, N)
    inner_r = np.zeros(h, bool)
    inner_r[band : h - band] = True
    inner_c = np.zeros(w, bool)
    inner_c[band : w - band] = True
    line_r = (rows > _LINE_FILL) & ~inner_r[:, None]
    line_c = (cols > _LINE_FILL) & ~inner_c[:, None]
    # A line pixel next to a found line row is the line's antialiased edge: widen by one pixel.
    line_r[1:] |= line_r[:-1] & (rows[1:] > _LINE_FILL / 2)
    line_r[:-1] |= line_r[1:] & (rows[:-1] > _LINE_FILL / 2)
    line_c[1:] |= line_c[:-1] & (cols[1:] > _LINE_FILL / 2)
    line_c[:-1] |= line_c[1:] & (cols[:-1] > _LINE_FILL / 2)
    dark *= ~line_r[:, None, :]
    dark *= ~line_c[None, :, :]


def _to_ink(small: np.ndarray) -> np.ndarray:
    """(28, 28, N) darkness -> (N, 28, 28) uint8 ink with per-box contrast."""
    flat = small.reshape(-1, small.shape[2])
    kth = round(_CONTRAST_PCT / 100.0 * (flat.shape[0] - 1))
    ref = np.partition(flat, kth, axis=0)[kth]
    scale = 1.0 / (np.maximum(ref, _CONTRAST_MIN) - _FLOOR)
    ink = (small - _FLOOR) * scale
    ink = np.clip(ink * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(ink.transpose(2, 0, 1))


def _gray_float(crop: np.ndarray) -> np.ndarray:
    crop = np.asarray(crop)
    if crop.ndim == 3:
        if crop.shape[2] == 1:
            crop = crop[:, :, 0]
        else:
            raise ValueError(f"box crop must be grayscale, got shape {crop.shape}")
    return crop.astype(np.float32, copy=False)


def _normalise_stack(stack: np.ndarray) -> np.ndarray:
    """(H, W, N) float32 gray of same-size crops -> (N, 28, 28) uint8."""
    if stack.shape[0] < 4 or stack.shape[1] < 4:
        raise ValueError(f"box crop too small: {stack.shape[:2]}")
    dark = _darkness(stack)
    _suppress_lines(dark)
    h, w, n = dark.shape
    # Resize all boxes in one call: side by side, each box's columns map exactly onto its own 28
    # output columns (INTER_AREA block boundaries align), so nothing leaks between boxes.
    tiled = np.ascontiguousarray(dark.transpose(0, 2, 1)).reshape(h, n * w)
    small = cv2.resize(tiled, (n * MODEL_SIZE, MODEL_SIZE), interpolation=cv2.INTER_AREA)
    small = small.reshape(MODEL_SIZE, n, MODEL_SIZE).transpose(0, 2, 1)
    return _to_ink(small)


def box_to_model_input(crop: np.ndarray) -> np.ndarray:
    """Gray crop (uint8 0-255 or float 0-1) of one printed box -> (28, 28) uint8, 255 = ink."""
    g = _gray_float(crop)
    return _normalise_stack(g[:, :, None])[0]


def batch_to_model_input(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Many box crops -> (N, 28, 28) uint8; same-size crops are processed together (fast path)."""
    out = np.zeros((len(crops), MODEL_SIZE, MODEL_SIZE), np.uint8)
    groups: dict[tuple[tuple[int, ...], np.dtype], list[int]] = {}
    arrays = [np.asarray(c) for c in crops]
    for i, a in enumerate(arrays):
        if a.ndim == 3 and a.shape[2] == 1:
            arrays[i] = a = a[:, :, 0]
        if a.ndim != 2:
            raise ValueError(f"box crop must be grayscale, got shape {a.shape}")
        groups.setdefault((a.shape, a.dtype), []).append(i)
    for (_, _dtype), idx in groups.items():
        stack = np.stack([arrays[i] for i in idx], axis=2)
        stack = stack.astype(np.float32)  # darkness is a ratio: the 0-255 or 0-1 scale does not matter
        out[idx] = _normalise_stack(stack)
    return out
