"""Photos the reader must refuse, one function per reason: what a person cannot read, or what is not the
kit's sheet.

`BAD_CAPTURES` is keyed by the reason id the reader reports. Every function takes the `FilledSheet` (which
knows its template, TPS and scale) and a random generator, and returns the photo's bytes (a JPEG, except for
`unreadable_file`); the rest of the photo is an ordinary capture at `severity` (`camera.sample_shot`), so
the only thing wrong is the named failure. Glare, defocus and darkness take a `strength` so that
`bench/gate.py` can sweep them from harmless to unreadable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import cv2
import numpy as np

from tpskit.forms import Template
from tpskit.sheets.camera import (
    Projection,
    SeverityName,
    add_specular,
    fill_for_px_per_mm,
    projection,
    sample_shot,
    shoot,
)
from tpskit.sheets.fill import FilledSheet
from tpskit.sheets.render import render_blank, stamp_qr

Corner = Literal["top-left", "top-right", "bottom-right", "bottom-left"]
CORNERS: tuple[Corner, ...] = ("top-left", "top-right", "bottom-right", "bottom-left")
_SKIN_BGR = ((80, 120, 170), (60, 95, 140), (100, 140, 200), (45, 70, 110), (90, 125, 180))
_SLEEVE_BGR = ((120, 60, 30), (40, 40, 40), (200, 200, 200), (40, 60, 120), (90, 110, 60))


Size = tuple[int, int] | None  # frame size; None: the camera's sensor condition draws it


def _hand_polygons(template: Template, corner: Corner, rng: np.random.Generator) -> list[
    tuple[np.ndarray, bool]
]:
    """A hand reaching in from the page's nearest side edge and resting over one marker, in page mm.

    Returns (polygon, is_sleeve) pairs. Fingers run along the page's x axis so the hand covers the marker
    and its quiet zone without reaching the QR code or the digit boxes.
    """
    m = template.markers
    item = m.by_corner(corner)
    mx, my = item.x_mm + m.size_mm / 2, item.y_mm + m.size_mm / 2
    sx = 1.0 if mx > template.page.width_mm / 2 else -1.0  # the hand comes from this side
    tilt = math.radians(rng.uniform(-6, 6))
    c, s = math.cos(tilt), math.sin(tilt)

    def place(pts: np.ndarray) -> np.ndarray:  # local (along-arm u, across v) -> page mm
        u, v = pts[:, 0] * sx, pts[:, 1]
        return np.column_stack([mx + u * c - v * s, my + u * s + v * c])

    half = m.size_mm / 2 + 2.0
    polys: list[tuple[np.ndarray, bool]] = []
    finger_w = m.size_mm * 0.36
    offsets = np.linspace(-1.5, 1.5, 4) * finger_w * 1.02
    for k, off in enumerate(offsets):
        tip = -(half + rng.uniform(1.0, 4.0) + (2.5 if k in (1, 2) else 0.0))
        r = finger_w / 2
        tip_arc = np.linspace(math.pi / 2, 3 * math.pi / 2, 12)  # round fingertip, facing -u
        base_arc = np.linspace(-math.pi / 2, math.pi / 2, 12)
        pts = np.vstack([
            np.column_stack([tip + r * np.cos(tip_arc), off + r * np.sin(tip_arc)]),
            np.column_stack([20.0 + r * np.cos(base_arc), off + r * np.sin(base_arc)]),
        ])
        polys.append((place(pts), False))
    ang = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    palm = np.column_stack([half + 16.0 + 17.0 * np.cos(ang), 14.0 * np.sin(ang)])
    polys.append((place(palm), False))
    wrist = np.array([[half + 26.0, -12.0], [half + 60.0, -13.0], [half + 60.0, 13.0], [half + 26.0, 12.0]])
    polys.append((place(wrist), False))
    sleeve = np.array([[half + 58.0, -17.0], [half + 400.0, -22.0], [half + 400.0, 22.0], [half + 58.0, 17.0]])
    polys.append((place(sleeve), True))
    return polys


def _paint_hand(frame: np.ndarray, polys_frame: list[tuple[np.ndarray, bool]], rng: np.random.Generator,
                soft_px: float) -> None:
    """Soft-edged, shaded hand and sleeve with a faint cast shadow, painted in place."""
    h, w = frame.shape[:2]
    allp = np.vstack([p for p, _ in polys_frame])
    pad = int(soft_px * 8) + 4
    x0, y0 = max(0, int(allp[:, 0].min()) - pad), max(0, int(allp[:, 1].min()) - pad)
    x1, y1 = min(w, int(allp[:, 0].max()) + pad), min(h, int(allp[:, 1].max()) + pad)
    if x1 <= x0 or y1 <= y0:
        return
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    skin_mask = np.zeros(roi.shape[:2], np.uint8)
    sleeve_mask = np.zeros(roi.shape[:2], np.uint8)
    for p, is_sleeve in polys_frame:
        q = np.round((p - (x0, y0)) * 16).astype(np.int32)
        cv2.fillPoly(sleeve_mask if is_sleeve else skin_mask, [q], 255, cv2.LINE_AA, 4)
    skin_a = cv2.GaussianBlur(skin_mask, (0, 0), soft_px).astype(np.float32) / 255.0
    sleeve_a = cv2.GaussianBlur(sleeve_mask, (0, 0), soft_px).astype(np.float32) / 255.0
    union = np.maximum(skin_a, sleeve_a)
    # Cast shadow: the union, shifted and blurred, darkens what lies under it.
    shift = np.float32([[1, 0, soft_px * 6], [0, 1, soft_px * 6]])
    shadow = cv2.warpAffine(union, shift, (union.shape[1], union.shape[0]))
    shadow = cv2.GaussianBlur(shadow, (0, 0), soft_px * 6)
    roi *= (1.0 - 0.45 * shadow)[..., None]
    # Shading across the hand: brighter towards one side, with mottling.
    yy, xx = np.mgrid[0:roi.shape[0], 0:roi.shape[1]].astype(np.float32)
    shade = 0.85 + 0.25 * (xx / max(1, roi.shape[1]) * 0.6 + yy / max(1, roi.shape[0]) * 0.4)
    skin = np.asarray(_SKIN_BGR[int(rng.integers(len(_SKIN_BGR)))], np.float32) * rng.uniform(0.9, 1.1)
    sleeve = np.asarray(_SLEEVE_BGR[int(rng.integers(len(_SLEEVE_BGR)))], np.float32)
    for colour, a in ((sleeve, sleeve_a), (skin, skin_a)):
        layer = colour[None, None, :] * shade[..., None]
        roi = roi * (1.0 - a[..., None]) + layer * a[..., None]
    frame[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)


def covered_corner(sheet: FilledSheet, rng: np.random.Generator, corner: Corner = "bottom-right", *,
                   severity: SeverityName = "normal", size: Size = None) -> bytes:
    """A hand (or sleeve) resting on the sheet over the marker of one named corner."""
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}, got {corner!r}")
    ppm = sheet.px_per_mm
    polys_mm = _hand_polygons(sheet.template, corner, rng)

    def hook(frame: np.ndarray, proj: Projection, rng: np.random.Generator) -> None:
        polys = [(proj.to_frame(p * ppm), sl) for p, sl in polys_mm]
        soft = max(1.0, 0.25 * proj.px_per_mm_at(100, 150))
        _paint_hand(frame, polys, rng, soft)

    return shoot(sheet.page, sample_shot(rng, severity, size), rng, before_light=hook).jpeg


def out_of_focus(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
                 size: Size = None, strength: float | None = None) -> bytes:
    """The lens focused far from the sheet (or the camera moved): strokes smear to mush.

    `strength`: defocus sigma in mm on the sheet (default 0.45-0.75 mm, e.g. 5.5-8.5 px of a 12 MP frame
    filled at 85 %); one photo in four is motion blur of 8 times that length instead.
    """
    shot = sample_shot(rng, severity, size)
    sigma_mm = float(rng.uniform(0.45, 0.75)) if strength is None else float(strength)
    ph, pw = sheet.page.shape[:2]
    k = projection((pw, ph), sheet.px_per_mm, shot).px_per_mm_at(105, 148)
    if strength is None and rng.random() < 0.25:
        shot = replace(shot, blur_sigma=0.5, motion_px=8 * sigma_mm * k)
    else:
        shot = replace(shot, blur_sigma=sigma_mm * k, motion_px=0.0)
    return shoot(sheet.page, shot, rng).jpeg


def too_dark(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
             size: Size = None, strength: float | None = None) -> bytes:
    """The lamp is off: paper comes out near black (3-8 % of full scale) and noisy. `strength`: the exposure
    (paper white = exposure x 255; default 0.012-0.03; the reader still reads down to about 0.05, see
    bench/gate.py)."""
    base = sample_shot(rng, severity, size)
    exposure = float(rng.uniform(0.012, 0.03)) if strength is None else float(strength)
    shot = replace(base, exposure=exposure, shadow=0.0, hard_shadow="none", sheen=0.0,
                   noise_sigma=base.noise_sigma + 1.5)
    return shoot(sheet.page, shot, rng).jpeg


def glare(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
          size: Size = None, strength: float | None = None) -> bytes:
    """A specular reflection of the lamp over a group of digit boxes. `strength`: how far it lifts the
    photo towards white at its centre (default 1.3-1.6: a saturated core where paper, print and ink are
    all white; below about 0.5 the boxes stay readable)."""
    t, ppm = sheet.template, sheet.px_per_mm
    f = t.fields[int(rng.integers(len(t.fields)))]
    xs = [b.x_mm for b in f.boxes] + [b.x_mm + b.w_mm for b in f.boxes]
    ys = [b.y_mm for b in f.boxes] + [b.y_mm + b.h_mm for b in f.boxes]
    centre_mm = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
    amount = float(rng.uniform(1.3, 1.6)) if strength is None else float(strength)

    def hook(frame: np.ndarray, proj: Projection, rng: np.random.Generator) -> None:
        c = proj.to_frame(np.array([centre_mm]) * ppm)[0]
        s = proj.px_per_mm_at(*centre_mm)
        add_specular(frame, c, (rng.uniform(30, 42) * s, rng.uniform(18, 26) * s), rng.uniform(0, math.pi), amount)

    shot = replace(sample_shot(rng, severity, size), sheen=0.0)
    return shoot(sheet.page, shot, rng, after_light=hook).jpeg


def _desk_objects(frame: np.ndarray, proj: Projection, rng: np.random.Generator) -> None:
    """What lies on a desk when no sheet does: a ballpoint pen and, often, a phone."""
    h, w = frame.shape[:2]
    s = min(w, h) / 250.0  # frame pixels per mm, roughly, for a desk seen at the sheet's distance
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    ang = rng.uniform(0, math.pi)
    d = np.array([math.cos(ang), math.sin(ang)])
    a, b = (np.array([cx, cy]) - d * 70 * s), (np.array([cx, cy]) + d * 70 * s)
    body = tuple(int(v) for v in (rng.choice([200, 30, 60]), rng.choice([80, 30, 60]), rng.choice([20, 30, 60])))
    cv2.line(frame, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), (25, 25, 25),
             round(9 * s), cv2.LINE_AA)
    cv2.line(frame, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), body, round(7 * s),
             cv2.LINE_AA)
    if rng.random() < 0.6:
        px, py = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        rect = ((px, py), (70 * s, 145 * s), rng.uniform(0, 180))
        box = cv2.boxPoints(rect).astype(np.int32)
        cv2.fillPoly(frame, [box], (20, 20, 22), cv2.LINE_AA)
        inner = cv2.boxPoints(((px, py), (62 * s, 130 * s), rect[2])).astype(np.int32)
        cv2.fillPoly(frame, [inner], (45, 40, 38), cv2.LINE_AA)


def no_sheet(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
             size: Size = None) -> bytes:
    """The desk under the camera with no sheet on it (a pen and a phone lie there)."""
    return shoot(None, sample_shot(rng, severity, size), rng, before_light=_desk_objects).jpeg


def sheet_too_small(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
                    size: Size = None) -> bytes:
    """The sheet far from the camera: 2.0-3.2 frame pixels per mm (a 12 MP frame: its long side spans 15-25 %
    of the frame), where the reader's own limit is 3.5 and ordinary photos have 6 or more."""
    shot = sample_shot(rng, severity, size)
    ph, pw = sheet.page.shape[:2]
    shot = replace(shot, fill=fill_for_px_per_mm(shot, (pw, ph), sheet.px_per_mm, float(rng.uniform(2.0, 3.2))))
    return shoot(sheet.page, shot, rng).jpeg


def _qr_decodes(page: np.ndarray, template: Template, ppm: float) -> bool:
    """Whether the QR can still be decoded from the flat page: by OpenCV's detector (at 5 px/mm, as a reader
    would see it) or by the reader's own module-grid decoder, whose error correction reads through a
    scribble or a smudge that leaves enough of the code (then the code is readable, not a bad capture)."""
    from tpskit.edge.reader.geometry import PageGeometry
    from tpskit.edge.reader.qr import read_qr_grid

    q = template.qr
    m = 6.0
    x0, y0 = max(0, int((q.x_mm - m) * ppm)), max(0, int((q.y_mm - m) * ppm))
    x1, y1 = int((q.x_mm + q.size_mm + m) * ppm), int((q.y_mm + q.size_mm + m) * ppm)
    crop = np.clip(page[y0:y1, x0:x1] * 255, 0, 255).astype(np.uint8)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, None, fx=5.0 / ppm, fy=5.0 / ppm, interpolation=cv2.INTER_AREA)
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(small)
    if text:
        return True
    # Page mm -> crop pixels (pixel centres at integers, as the reader's warps expect).
    H = np.array([[ppm, 0.0, -x0 - 0.5], [0.0, ppm, -y0 - 0.5], [0.0, 0.0, 1.0]])
    geom = PageGeometry(H=H, error_mm=0.0, px_per_mm=ppm)
    return read_qr_grid(gray, geom, q.x_mm, q.y_mm, q.size_mm).text is not None


def _cover_qr(page: np.ndarray, template: Template, ppm: float, rng: np.random.Generator, how: str) -> None:
    q = template.qr
    x, y, s = q.x_mm * ppm, q.y_mm * ppm, q.size_mm * ppm
    h, w = page.shape[:2]
    if how == "sticky":  # a yellow sticky note over most of the code
        cover = rng.uniform(0.7, 1.0)
        cx, cy = x + s * rng.uniform(0.4, 0.6), y + s * rng.uniform(0.4, 0.6)
        half = s * cover * 0.62
        ang = rng.uniform(-0.3, 0.3)
        pts = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        poly = np.round((pts @ rot.T + (cx, cy)) * 16).astype(np.int32)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, 4)
        a = (mask.astype(np.float32) / 255.0)[..., None]
        note = np.array([0.45, 0.9, 0.97], np.float32) * rng.uniform(0.92, 1.0)
        page[:] = page * (1 - a) + note * a
    elif how == "scribble":  # an officer's dense ballpoint scribble across the code
        mask = np.zeros((h, w), np.uint8)
        pts = []
        for _ in range(int(rng.integers(40, 60))):
            pts.append((x + s * rng.uniform(-0.05, 1.05), y + s * rng.uniform(-0.05, 1.05)))
        q16 = np.round(np.array(pts) * 16).astype(np.int32)
        cv2.polylines(mask, [q16], False, 255, max(2, round(0.9 * ppm)), cv2.LINE_AA, 4)
        a = (mask.astype(np.float32) / 255.0)[..., None] * 0.95
        ink = np.array([0.55, 0.2, 0.1], np.float32)
        page[:] = page * (1 - a * (1 - ink))
    else:  # "smudge": a wet smear: the code blurred through and stained grey-brown
        x0, y0 = max(0, int(x - 0.1 * s)), max(0, int(y - 0.1 * s))
        x1, y1 = min(w, int(x + 1.1 * s)), min(h, int(y + 1.1 * s))
        roi = page[y0:y1, x0:x1]
        blurred = cv2.GaussianBlur(roi, (0, 0), 0.12 * s)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d = np.hypot((xx - (x + s / 2)) / (0.6 * s), (yy - (y + s / 2)) / (0.55 * s))
        a = np.clip(1.3 - d, 0, 1)[..., None]
        stain = np.array([0.55, 0.62, 0.7], np.float32)
        page[y0:y1, x0:x1] = (roi * (1 - a) + blurred * a) * (1 - 0.4 * a * (1 - stain))


def qr_unreadable(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
                  size: Size = None) -> bytes:
    """The QR code covered by a sticky note, scribbled over or smudged; checked undecodable on the page."""
    page = sheet.page.copy()
    how = str(rng.choice(["sticky", "scribble", "smudge"]))
    _cover_qr(page, sheet.template, sheet.px_per_mm, rng, how)
    if _qr_decodes(page, sheet.template, sheet.px_per_mm):
        _cover_qr(page, sheet.template, sheet.px_per_mm, rng, "sticky")
    return shoot(page, sample_shot(rng, severity, size), rng).jpeg


def other_tps(tps: str, rng: np.random.Generator) -> str:
    """A valid TPS code other than `tps`: the next polling station of the same village, or another village."""
    if rng.random() < 0.7:
        n = int(tps[10:])
        other = n + 1 if n < 999 else n - 1
        return f"{tps[:10]}{other:03d}"
    while True:
        code = "".join(str(int(d)) for d in rng.integers(0, 10, 13))
        if code != tps and code[0] != "0":
            return code


def wrong_tps(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
              size: Size = None) -> bytes:
    """A valid, filled sheet whose pre-printed QR names another TPS than `sheet.tps` (the kit's)."""
    page = sheet.page.copy()
    stamp_qr(page, sheet.template, other_tps(sheet.tps, rng), sheet.px_per_mm)
    return shoot(page, sample_shot(rng, severity, size), rng).jpeg


def blank_sheet(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
                size: Size = None) -> bytes:
    """The sheet of the right TPS with nothing written on it."""
    page = render_blank(sheet.template, sheet.tps, sheet.px_per_mm)
    return shoot(page, sample_shot(rng, severity, size), rng).jpeg


def sheet_out_of_frame(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
                       size: Size = None) -> bytes:
    """The sheet pushed past one side of the frame: its markers on that side and some boxes or the QR out of
    view (the reader must name the side)."""
    shot = sample_shot(rng, severity, size)
    shot = replace(shot, fill=max(shot.fill, 0.8), snug_mm=float(-rng.uniform(45, 70)), snug_side=int(rng.integers(4)))
    return shoot(sheet.page, shot, rng, markers_mm=sheet.markers_mm).jpeg


def _foreign_page(rng: np.random.Generator, kind: str, ppm: float, digits: tuple[np.ndarray, np.ndarray] | None
                  ) -> np.ndarray:
    """A page that is not the kit's form (float32 BGR in [0, 1]): text, ruled tables, boxes, no kit marker
    and no kit QR code.

    kinds: "other_form" (another office's form: ruled table, labels), "book" (paragraphs of text),
    "photocopy" (a grey, contrasty, speckled copy of a form), "chasil_2024" (the authority's own C.Hasil
    layout as printed in 2024: header, a tally table with handwritten numbers, signature lines).
    """
    from PIL import Image, ImageDraw, ImageFont

    w, h = round(210 * ppm), round(297 * ppm)
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)

    def font(mm: float) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
        return ImageFont.load_default(size=max(6.0, mm * ppm))

    words = ["jumlah", "suara", "pemilih", "desa", "kecamatan", "data", "nomor", "pasangan", "calon", "sah",
             "tidak", "formulir", "rekapitulasi", "hasil", "penghitungan", "tempat", "pemungutan", "the", "of",
             "and", "kabupaten", "provinsi", "dalam", "untuk", "dengan", "yang"]

    def line(n: int) -> str:
        return " ".join(str(rng.choice(words)) for _ in range(n))

    x0, y = 18 * ppm, 16 * ppm
    if kind == "book":
        d.text((x0, y), line(4).upper(), fill=0, font=font(5))
        y += 12 * ppm
        while y < h - 20 * ppm:
            d.text((x0, y), line(int(rng.integers(9, 13))), fill=0, font=font(3.2))
            y += 5.2 * ppm
            if rng.random() < 0.08:
                y += 4 * ppm
    else:
        d.text((x0, y), ("MODEL C.HASIL-PPWP" if kind == "chasil_2024" else line(3)).upper(), fill=0, font=font(6))
        y += 10 * ppm
        for _ in range(4):
            d.text((x0, y), f"{line(2).upper()} : ................................", fill=0, font=font(3.2))
            y += 5.5 * ppm
        y += 5 * ppm
        rows, cols = int(rng.integers(10, 18)), int(rng.integers(3, 6))
        tw, rh = w - 2 * x0, 9 * ppm
        for r in range(rows + 1):
            d.line([(x0, y + r * rh), (x0 + tw, y + r * rh)], fill=0, width=max(1, round(0.3 * ppm)))
        cx = [x0 + tw * c / cols for c in range(cols + 1)]
        cx[1] = x0 + tw * 0.45
        for x in cx:
            d.line([(x, y), (x, y + rows * rh)], fill=0, width=max(1, round(0.3 * ppm)))
        for r in range(rows):
            d.text((x0 + 2 * ppm, y + r * rh + 2.5 * ppm), f"{r + 1}. {line(3)}", fill=0, font=font(3.0))
        table_top = y
        y += rows * rh + 12 * ppm
        for _ in range(2):
            d.text((x0 + rng.uniform(0, 90) * ppm, y), "(tanda tangan) ....................", fill=0, font=font(3))
            y += 10 * ppm
    page = np.asarray(img, np.float32) / 255.0
    if kind in ("chasil_2024", "other_form") and digits is not None:
        # Numbers written by hand into the table's right-hand columns.
        from tpskit.sheets.handwriting import Glyph, draw_glyph, random_style

        rgb = np.repeat(page[..., None], 3, axis=2)
        style = random_style(rng, "normal")
        images, labels = digits
        for r in range(rows):
            for c in range(2, cols + 1):
                if rng.random() < 0.3:
                    continue
                for k in range(int(rng.integers(1, 4))):
                    i = int(rng.integers(len(labels)))
                    box = (cx[c - 1] + (2 + 6 * k) * ppm, table_top + r * rh + 1 * ppm, 6 * ppm, 7 * ppm)
                    draw_glyph(rgb, box, Glyph.digit(images[i], int(labels[i])), rng, style, px_per_mm=ppm)
        return rgb.astype(np.float32)
    if kind == "photocopy":
        # Toner: darker grey paper, heavier print, speckle and a streak.
        page = np.clip(0.82 * page + rng.normal(0, 0.04, page.shape).astype(np.float32), 0, 1)
        page = np.where(page < 0.5, page * 0.6, page)
        x = int(rng.uniform(0.1, 0.9) * w)
        page[:, x : x + max(1, round(0.5 * ppm))] *= 0.7
    return np.repeat(page[..., None], 3, axis=2).astype(np.float32)


def not_a_kit_form(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
                   size: Size = None, kind: str | None = None) -> bytes:
    """A page that is not the sheet printed for this kit (another form, a book page, a photocopy, the
    authority's 2024 C.Hasil): text and lines, no kit marker, no kit QR code. Photographed like a sheet,
    or (one in three) filling the whole frame as a phone photo would."""
    from tpskit.sheets.digits_data import load_validation_digits

    kind = kind or str(rng.choice(["other_form", "book", "photocopy", "chasil_2024"]))
    page = _foreign_page(rng, kind, sheet.px_per_mm, load_validation_digits())
    shot = sample_shot(rng, severity, size)
    if rng.random() < 1 / 3:
        shot = replace(shot, fill=float(rng.uniform(1.0, 1.15)))
    return shoot(page, shot, rng).jpeg


def unreadable_file(sheet: FilledSheet, rng: np.random.Generator, *, severity: SeverityName = "normal",
                    size: Size = None) -> bytes:
    """Not an image: a text file, an empty file, or a JPEG cut short (a power cut while writing)."""
    kind = int(rng.integers(3))
    if kind == 0:
        return b"This is not a photo: " + bytes(rng.integers(32, 127, 200, dtype=np.uint8))
    if kind == 1:
        return b""
    jpeg = shoot(sheet.page, sample_shot(rng, severity, size), rng).jpeg
    return jpeg[: len(jpeg) // int(rng.integers(2, 5))]


BadCapture = Callable[..., bytes]
#: Reason id (as the reader reports it) -> scenario. Each is called as fn(sheet, rng, severity=..., size=...).
BAD_CAPTURES: dict[str, BadCapture] = {
    "marker_missing": covered_corner,
    "out_of_focus": out_of_focus,
    "too_dark": too_dark,
    "glare": glare,
    "no_sheet": no_sheet,
    "sheet_too_small": sheet_too_small,
    "qr_unreadable": qr_unreadable,
    "wrong_tps": wrong_tps,
    "blank_sheet": blank_sheet,
    "sheet_out_of_frame": sheet_out_of_frame,
    "not_a_kit_form": not_a_kit_form,
    "unreadable_file": unreadable_file,
}
