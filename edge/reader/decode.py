"""Photo bytes -> grayscale working image, at reduced size where the photo is large.

A 12 MP JPEG decoded at half size by libjpeg's DCT scaling costs a fraction of a full decode and still
gives ~4 px/mm on the sheet, enough for the digit boxes (read at 6 px/mm by interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Below this long side a photo is decoded at full size.
FULL_DECODE_BELOW_PX = 2400


class UnreadablePhoto(ValueError):
    """Bytes that are not a complete, decodable photo. The message says why, for the log."""


@dataclass(frozen=True)
class Decoded:
    gray: np.ndarray
    #: Pixels of the original photo per pixel of `gray` (2 when decoded at half size).
    scale: int


def _check_container(data: bytes) -> None:
    if not data:
        raise UnreadablePhoto("empty file")
    if data[:2] == b"\xff\xd8":
        # A JPEG cut short (power cut while writing, full disk) still decodes to a grey-filled image;
        # refuse it instead of reading the grey half as blank boxes.
        if b"\xff\xd9" not in data[-4096:]:
            raise UnreadablePhoto("truncated JPEG (no end-of-image marker)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-64:]:
            raise UnreadablePhoto("truncated PNG (no IEND chunk)")
    elif data[:4] not in (b"II*\x00", b"MM\x00*") and data[:2] != b"BM":
        raise UnreadablePhoto("not a JPEG, PNG, TIFF or BMP image")


def decode_photo(data: bytes) -> Decoded:
    """Decode to grayscale; half size when the photo is large. Raises UnreadablePhoto."""
    _check_container(data)
    buf = np.frombuffer(data, np.uint8)
    gray = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_2)
    scale = 2
    if gray is not None and max(gray.shape) < FULL_DECODE_BELOW_PX // 2:
        gray, scale = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), 1
    if gray is None or gray.size == 0:
        raise UnreadablePhoto("the image data could not be decoded")
    return Decoded(gray=gray, scale=scale)
