"""Photos built to hurt the reader: a header that claims 900 megapixels, a side of one pixel, a defect
inside the reader. Each is a refusal for that photo, quickly, and `tpskit read` goes on with the next."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tpskit.cli import main
from tpskit.edge.reader import decode, pipeline
from tpskit.edge.reader.digit_model import load_digit_model
from tpskit.edge.reader.pipeline import read_sheet
from tpskit.forms import load_templates

REFERENCE = Path(__file__).resolve().parent.parent / "edge" / "reference" / "reference-sheet.jpg"


def with_frame_size(jpeg: bytes, height: int, width: int) -> bytes:
    """The same JPEG with its frame header (SOF) claiming another size; the data is unchanged."""
    b, i = bytearray(jpeg), 2
    while i < len(b):
        marker, length = b[i + 1], int.from_bytes(b[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 7], b[i + 7:i + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
            return bytes(b)
        i += 2 + length
    raise AssertionError("no frame header")


@pytest.fixture(scope="module")
def reader():
    return load_templates(), load_digit_model()


@pytest.mark.parametrize("side", [30000, 8000], ids=["900MP", "64MP"])
def test_a_jpeg_claiming_30000_by_30000_pixels_is_refused_from_its_header_without_decoding(side, reader, monkeypatch):
    def no_decoding(*_a, **_k):
        raise AssertionError("the photo was decoded")

    monkeypatch.setattr(decode.cv2, "imdecode", no_decoding)
    bomb = with_frame_size(REFERENCE.read_bytes(), side, side)
    r = read_sheet(bomb, *reader)
    assert (r.status, r.reason) == ("rejected", "unreadable_file")
    with pytest.raises(decode.UnreadablePhoto, match="above the limit of 50 MP"):
        decode.decode_photo(bomb)


@pytest.mark.parametrize(("height", "width"), [(1, 2000), (2000, 1)], ids=["height-1", "width-1"])
def test_a_header_with_a_side_of_one_pixel_is_a_refused_photo_and_read_goes_on(height, width, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(with_frame_size(REFERENCE.read_bytes(), height, width))
    good = tmp_path / "good.jpg"
    good.write_bytes(REFERENCE.read_bytes())
    code = main(["read", "--json", str(bad), str(good)])
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (first["status"], first["reason"]) == ("rejected", "unreadable_file")
    assert second["status"] in ("ok", "review")
    assert code == 3


def test_a_defect_inside_the_reader_is_the_refusal_reader_error_not_an_exception(reader, monkeypatch):
    def broken(*_a, **_k):
        raise ZeroDivisionError("a defect some photo triggers")

    monkeypatch.setattr(pipeline, "locate_sheet", broken)
    r = read_sheet(REFERENCE.read_bytes(), *reader)
    assert (r.status, r.reason) == ("rejected", "reader_error")
    assert "technician" in r.message.en


def test_a_78_byte_png_with_a_corrupt_stream_is_refused_without_opencvs_png_decoder(reader, monkeypatch):
    """Found by the reader fuzzer: OpenCV 4.14 spent 1.6 s and 2 GB decoding it (a kit would be killed
    for lack of memory). PNG, TIFF and BMP are decoded by Pillow, which refuses it at once."""
    png = (Path(__file__).resolve().parent / "fuzz" / "crashes" / "reader" /
           "png-corrupt-stream-opencv-2gb.png").read_bytes()
    assert len(png) == 78

    def no_opencv(*_a, **_k):
        raise AssertionError("OpenCV decoded a PNG")

    monkeypatch.setattr(decode.cv2, "imdecode", no_opencv)
    r = read_sheet(png, *reader)
    assert (r.status, r.reason) == ("rejected", "unreadable_file")


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp"])
def test_the_reference_sheet_as_png_tiff_or_bmp_reads_the_same_values_as_its_jpeg(ext, reader):
    import cv2
    import numpy as np

    jpeg = REFERENCE.read_bytes()
    gray = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    other = cv2.imencode(ext, gray)[1].tobytes()
    a, b = read_sheet(jpeg, *reader), read_sheet(other, *reader)
    assert b.status == a.status and b.values() == a.values()


def test_a_photo_whose_fields_are_found_without_any_found_box_is_read_not_a_reader_error(reader):
    """Found by the reader fuzzer (a mutated JPEG of the reference sheet): the search along a curled edge
    raised ValueError on an empty set of found boxes, which read_sheet turned into reader_error."""
    from tpskit.edge.reader import pipeline

    jpeg = (Path(__file__).resolve().parent / "fuzz" / "crashes" / "reader" /
            "found-field-without-found-box.jpg").read_bytes()
    r = pipeline._read_sheet(jpeg, *reader, None, "fuzz.jpg")  # the inner function: a defect would raise
    assert r.reason != "reader_error"
