"""Officer-facing messages for every reason a capture is refused: Bahasa Indonesia, then English.

Each says what to do, not what went wrong inside the kit.
"""

from __future__ import annotations

from .types import OfficerMessage

SIDES_ID = {"left": "kiri", "right": "kanan", "top": "atas", "bottom": "bawah"}

CORNERS_ID = {
    "top-left": "kiri atas",
    "top-right": "kanan atas",
    "bottom-right": "kanan bawah",
    "bottom-left": "kiri bawah",
}

_MESSAGES: dict[str, tuple[str, str]] = {
    "unreadable_file": (
        "Foto tidak dapat dibaca. Tekan tombol foto sekali lagi.",
        "The photo could not be read. Press the capture button again.",
    ),
    "reader_error": (
        "Kit tidak dapat membaca foto ini. Foto lagi; jika terulang, hubungi teknisi.",
        "The kit could not read this photo. Capture again; if it happens again, call the technician.",
    ),
    "marker_missing": (
        "Tanda sudut {corner_id} tidak terlihat: mungkin tertutup tangan atau benda. Singkirkan, lalu foto lagi.",
        "The {corner} corner mark is not visible: a hand or an object may cover it. Clear it and capture again.",
    ),
    "out_of_focus": (
        "Foto buram. Letakkan lembar rata di alas kamera, jangan digerakkan, lalu foto lagi.",
        "The photo is blurred. Lay the sheet flat on the stand, keep it still and capture again.",
    ),
    "too_dark": (
        "Foto terlalu gelap. Nyalakan lampu atau pindah ke tempat yang lebih terang, lalu foto lagi.",
        "The photo is too dark. Turn on the lamp or move somewhere brighter, then capture again.",
    ),
    "glare": (
        "Ada pantulan cahaya di atas kotak angka. Geser lampu atau lembar, lalu foto lagi.",
        "Light glare covers the number boxes. Move the lamp or the sheet, then capture again.",
    ),
    "sheet_out_of_frame": (
        "Lembar keluar dari bingkai di sisi {side_id}: geser ke tengah, lalu foto lagi.",
        "The sheet runs out of the frame on the {side} side: move it to the centre, then capture again.",
    ),
    "not_a_kit_form": (
        "Ini bukan formulir kit ini (tidak ada tanda sudut dan kode QR kit). Gunakan formulir C.Hasil yang "
        "dicetak untuk kit ini.",
        "This is not this kit's form (no kit corner marks or QR code). Use the C.Hasil sheet printed for this kit.",
    ),
    "no_sheet": (
        "Tidak ada formulir di bawah kamera. Letakkan formulir C.Hasil di dalam bingkai alas.",
        "No form in view. Place the C.Hasil sheet inside the frame on the stand.",
    ),
    "sheet_too_small": (
        "Formulir terlalu kecil atau terlalu jauh. Letakkan formulir tepat di alas kamera, di dalam tanda.",
        "The sheet is too small or too far away. Place it on the stand, inside the guide marks.",
    ),
    "sheet_not_flat": (
        "Lembar tidak rata (terlipat atau melengkung). Ratakan lembar di alas kamera, lalu foto lagi.",
        "The sheet is not flat (folded or curled). Flatten it on the stand, then capture again.",
    ),
    "qr_unreadable": (
        "Kode QR di kanan atas formulir tidak terbaca. Pastikan tidak tertutup, terlipat atau kotor.",
        "The QR code at the top right of the form cannot be read. Make sure it is not covered, folded or smudged.",
    ),
    "wrong_tps": (
        "Formulir ini milik TPS {tps}, bukan TPS kit ini ({expected}). Gunakan formulir TPS ini.",
        "This form belongs to TPS {tps}, not to this kit's TPS ({expected}). Use this TPS's form.",
    ),
    "unknown_form": (
        "Jenis formulir '{form}' tidak dikenal oleh kit ini. Hubungi teknisi.",
        "This kit does not know the form type '{form}'. Call the technician.",
    ),
    "blank_sheet": (
        "Formulir belum diisi. Tulis hasil penghitungan di kotak angka, lalu foto lagi.",
        "Nothing is written on the form. Write the count in the number boxes, then capture again.",
    ),
}

REASONS = tuple(_MESSAGES)


def officer_message(reason: str, **params: str) -> OfficerMessage:
    """The message for a refusal reason; `params` fill the placeholders (corner, tps, form...)."""
    id_text, en_text = _MESSAGES[reason]
    if "corner" in params:
        params = {**params, "corner_id": CORNERS_ID.get(params["corner"], params["corner"])}
    if "side" in params:
        params = {**params, "side_id": SIDES_ID.get(params["side"], params["side"])}
    return OfficerMessage(id=id_text.format(**params), en=en_text.format(**params))
