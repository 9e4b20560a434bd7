"""Photo bytes -> grayscale working image, at reduced size where the photo is large.

A 12 MP JPEG decoded at half size by libjpeg's DCT scaling costs a fraction of a full decode and still
gives ~4 px/mm on the sheet, enough for the digit boxes (read at 6 px/mm by interpolation).

The dimensions are read from the file's header (Pillow parses only the header) before anything is
decoded: a 436 KB JPEG can claim 30000 x 30000 pixels, which OpenCV would spend seconds and a gigabyte
on; a header with a side of 1 pixel made OpenCV's resize assert later on.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

#: Below this long side a photo is decoded at full size.
FULL_DECODE_BELOW_PX = 2400
#: Largest photo decoded: 4x the kit camera's 12 MP, so any real camera's photo passes; a claimed
#: 30000 x 30000 (900 MP) is refused from its header.
MAX_PHOTO_PIXELS = 50_000_000
#: Smallest side of a photo that can hold a sheet (the reader needs ~4 px/mm over a 210 mm page).
MIN_PHOTO_SIDE_PX = 200


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


def photo_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding. Raises UnreadablePhoto."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: our limit is below it
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Image.DecompressionBombError as e:  # Pillow's own limit, far above ours
        raise UnreadablePhoto(f"the header claims a size above the limit of {MAX_PHOTO_PIXELS // 1_000_000} MP "
                              f"({e})") from e
    except Exception as e:  # Pillow raises many types on hostile headers; each is an unreadable photo
        raise UnreadablePhoto(f"the image header could not be read ({type(e).__name__})") from e
    return int(width), int(height)


def _check_size(data: bytes) -> None:
    width, height = photo_size(data)
    if width * height > MAX_PHOTO_PIXELS:
        raise UnreadablePhoto(f"the header claims {width} x {height} pixels, above the limit of "
                              f"{MAX_PHOTO_PIXELS // 1_000_000} MP")
    if min(width, height) < MIN_PHOTO_SIDE_PX:
        raise UnreadablePhoto(f"{width} x {height} pixels is too small to hold a sheet")


def _decode_other(data: bytes, full: bool) -> Decoded:
    """PNG, TIFF and BMP, by Pillow. OpenCV 4.14's PNG decoder spent 1.6 s and 2 GB of memory on a 78-byte
    PNG (240 x 340 in its header, a corrupt data stream; found by tests/fuzz): enough to get a kit killed
    for lack of memory. Pillow decodes within the image's own size and raises on a corrupt stream."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the high byte, as OpenCV does
                    gray = (np.asarray(im, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
                else:
                    gray = np.asarray(im.convert("L"))
    except Exception as e:  # a corrupt stream raises many types; each is an unreadable photo
        raise UnreadablePhoto(f"the image data could not be decoded ({type(e).__name__})") from e
    gray = np.ascontiguousarray(gray)
    if gray.ndim != 2 or min(gray.shape) < MIN_PHOTO_SIDE_PX:
        raise UnreadablePhoto("the image data could not be decoded")
    if not full and max(gray.shape) >= FULL_DECODE_BELOW_PX:
        half = (gray.shape[1] // 2, gray.shape[0] // 2)
        return Decoded(gray=cv2.resize(gray, half, interpolation=cv2.INTER_AREA), scale=2)
    return Decoded(gray=gray, scale=1)


def decode_photo(data: bytes, full: bool = False) -> Decoded:
    """Decode to grayscale; half size when the photo is large (unless `full`). Raises UnreadablePhoto."""
    _check_container(data)
    _check_size(data)
    if data[:2] != b"\xff\xd8":
        return _decode_other(data, full)
    buf = np.frombuffer(data, np.uint8)
    gray = None if full else cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_2)
    scale = 2
    if gray is None or max(gray.shape) < FULL_DECODE_BELOW_PX // 2:
        gray, scale = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), 1
    if gray is None or gray.size == 0 or min(gray.shape) < MIN_PHOTO_SIDE_PX // scale:
        # The decoder may disagree with the header (a second frame header, a corrupt stream).
        raise UnreadablePhoto("the image data could not be decoded")
    return Decoded(gray=gray, scale=scale)
