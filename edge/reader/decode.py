"""Photo bytes -> grayscale working image, at reduced size where the photo is large.

A 12 MP JPEG decoded at half size by libjpeg's DCT scaling costs a fraction of a full decode and still
gives ~4 px/mm on the sheet, enough for the digit boxes (read at 6 px/mm by interpolation).

The dimensions are read from the file's header (a JPEG's or PNG's by a few lines here, other formats'
by Pillow) before anything is decoded: a 436 KB JPEG can claim 30000 x 30000 pixels, which OpenCV would
spend seconds and a gigabyte on; a header with a side of 1 pixel made OpenCV's resize assert later on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

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


#: JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame segment: the camera's format, parsed here without
    Pillow (whose import and parser cost the kit 5 MB of memory on every read)."""
    p, n = 2, len(data)
    while p + 4 <= n:
        if data[p] != 0xFF:
            raise UnreadablePhoto("the JPEG header is corrupt (no marker where one must be)")
        m = data[p + 1]
        if m == 0xFF:  # fill byte before a marker
            p += 1
            continue
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # markers without a length
            p += 2
            continue
        if m == 0xD9 or m == 0xDA:
            break  # end of image, or image data before any frame header
        length = (data[p + 2] << 8) | data[p + 3]
        if length < 2:
            raise UnreadablePhoto("the JPEG header is corrupt (a segment shorter than its length field)")
        if m in _SOF:
            if p + 9 > n or length < 7:
                break
            height = (data[p + 5] << 8) | data[p + 6]
            width = (data[p + 7] << 8) | data[p + 8]
            return width, height
        p += 2 + length
    raise UnreadablePhoto("the JPEG header has no frame size")


def photo_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding. Raises UnreadablePhoto."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    from PIL import Image  # TIFF, BMP and damaged PNGs: rare on a kit, Pillow knows them

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


@lru_cache(maxsize=1)
def _turbojpeg() -> object | None:
    try:
        from turbojpeg import TurboJPEG

        return TurboJPEG()
    except (ImportError, OSError, RuntimeError):  # libturbojpeg0 not installed: OpenCV decodes instead
        return None


def _decode_jpeg(data: bytes, half: bool) -> np.ndarray | None:
    """A JPEG decoded to grey by libjpeg-turbo, straight into the array the reader keeps (OpenCV's imdecode
    hands back a copy of its own buffer: twice the image at once, 12 MB more at the peak for a 12 MP photo
    decoded at full size). None when the library is missing or refuses the file (a CMYK JPEG, say)."""
    tj = _turbojpeg()
    if tj is None:
        return None
    from turbojpeg import TJPF_GRAY

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "corrupt data" warnings: the image is checked below as for OpenCV
            img = tj.decode(data, pixel_format=TJPF_GRAY, scaling_factor=(1, 2) if half else None)
    except (OSError, ValueError):
        return None
    return img[:, :, 0]


def _decode(data: bytes, buf: np.ndarray, half: bool) -> np.ndarray | None:
    """A JPEG: libjpeg-turbo, or OpenCV where it is missing or refuses the file."""
    gray = _decode_jpeg(data, half)
    if gray is None:
        gray = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_2 if half else cv2.IMREAD_GRAYSCALE)
    return gray


def _decode_within(data: bytes, extent: tuple[int, int]) -> Decoded:
    """The photo at full size without its pixels right of x1 and below y1 (`extent`), cut in its own
    memory: the rows are moved to the buffer's start and the buffer shrunk (realloc), so that the full
    image and the cut are never held at once (a copy where numpy does not own the buffer). The top-left
    corner stays, so every pixel keeps its coordinates and the reading is the same to the last bit."""
    d = decode_photo(data, full=True)
    gray = d.gray
    del d  # from here `gray` (then `owner`) holds the only reference to the image
    H, W = gray.shape
    w, h = min(W, int(extent[0])), min(H, int(extent[1]))
    if min(h, w) < MIN_PHOTO_SIDE_PX or h * w > 0.9 * H * W:
        return Decoded(gray=gray, scale=1)  # little to gain, or an extent that makes no sense
    owner = gray.base if gray.base is not None else gray
    if not (gray.flags.c_contiguous and isinstance(owner, np.ndarray) and owner.flags.owndata
            and owner.flags.c_contiguous and owner.nbytes == gray.nbytes):
        return Decoded(gray=np.ascontiguousarray(gray[:h, :w]), scale=1)
    del gray
    if w > 0.85 * W:
        w = W  # rows only: nothing moves
    flat = owner.reshape(-1)
    rows = flat[: H * W].reshape(H, W)
    a = 1
    while a < h and w < W:
        # Rows a..b-1 move from a*W.. to a*w..: in blocks whose destination ends before their source starts,
        # so numpy copies without a temporary (a row at a time cost 4 ms on a 12 MP photo; these are ~30).
        b = min(h, max(a + 1, a * W // w))
        flat[a * w : b * w].reshape(b - a, w)[...] = rows[a:b, :w]
        a = b
    del flat, rows
    try:
        owner.resize((h * w,), refcheck=True)
        cut = owner.reshape(h, w)
    except ValueError:  # referenced elsewhere after all: keep the buffer, view the moved rows
        cut = owner.reshape(-1)[: h * w].reshape(h, w)
    return Decoded(gray=cut, scale=1)


def decode_photo(data: bytes, full: bool = False, within: tuple[int, int] | None = None) -> Decoded:
    """Decode to grayscale; half size when the photo is large (unless `full`). Raises UnreadablePhoto.

    `within` (x1, y1 in the photo's pixels), with `full`: drop the pixels right of x1 and below y1 (off
    the sheet of a photo decoded at full size because the sheet is small in it): a 12 MP photo's frame
    is not held while the sheet is read."""
    _check_container(data)
    _check_size(data)
    if full and within is not None:
        return _decode_within(data, within)
    if data[:2] != b"\xff\xd8":
        return _decode_other(data, full)
    buf = np.frombuffer(data, np.uint8)
    gray = None if full else _decode(data, buf, half=True)
    scale = 2
    if gray is None or max(gray.shape) < FULL_DECODE_BELOW_PX // 2:
        gray, scale = _decode(data, buf, half=False), 1
    if gray is None or gray.size == 0 or min(gray.shape) < MIN_PHOTO_SIDE_PX // scale:
        # The decoder may disagree with the header (a second frame header, a corrupt stream).
        raise UnreadablePhoto("the image data could not be decoded")
    return Decoded(gray=gray, scale=scale)


@lru_cache(maxsize=1)
def _malloc_trim() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_freed_memory() -> None:
    """Hand the pages of freed buffers back to the system (glibc keeps them for reuse by default).

    Called once before a full-size decode: the half-size image and the marker search's buffers are freed by
    then, but held, and the 12 MP image would come on top of them (the peak memory of `tpskit read` on a small
    sheet: 140 MB without, 12-15 MB less with). Changes no result; costs well under a millisecond."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
