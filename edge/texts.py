"""Everything the kit says to the officer, in one catalogue: Bahasa Indonesia first, English second.

Each entry has a key (a touch page or a translator finds it by that), both languages, its level (info: nothing
to do; action: the officer must act; error: call the technician), and the light and buzzer signal it is
shown with (None: the signal of the state it is shown in, e.g. a signing failure while a reading waits).
Placeholders in braces are filled when the message is made; field names are the form's printed labels
(`Pasangan calon nomor urut 01`), never the template's internal ids. `catalogue()` is the whole table as
plain data, lights and buzzer included, for a page to serve.

Each message says what to do, not what went wrong inside the kit. The technician's texts (camera, key,
clock) come from the modules that detect the problem and are shown inside these.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tpskit.firmware.signals import BEEPS, SIGNALS, Signal
from tpskit.officer import Level, OfficerMessage


@dataclass(frozen=True)
class Text:
    """One catalogue entry; call it with its placeholders to make the message shown."""

    key: str
    id: str
    en: str
    level: Level
    signal: Signal | None

    @property
    def params(self) -> tuple[str, ...]:
        names = {name for text in (self.id, self.en) for _, name, _, _ in string.Formatter().parse(text) if name}
        return tuple(sorted(names))

    def __call__(self, **params: Any) -> OfficerMessage:
        return OfficerMessage(self.key, self.id.format(**params), self.en.format(**params), self.level)


_ENTRIES: list[Text] = []


def _text(key: str, id_text: str, en_text: str, level: Level, signal: Signal | None) -> Text:
    t = Text(key, id_text, en_text, level, signal)
    _ENTRIES.append(t)
    return t


# ------------------------------------------------------------------------------------------ the daemon
READY = _text("ready", "Siap. Letakkan formulir di alas kamera dan tekan tombol Foto.",
              "Ready. Lay the sheet on the stand and press Capture.", "info", Signal.READY)
WORKING = _text("working", "Memotret dan membaca formulir. Jangan digeser.",
                "Photographing and reading the sheet. Do not move it.", "info", Signal.WORKING)
CONFIRM = _text("confirm", "Formulir terbaca. Periksa angka di layar, lalu tekan Konfirmasi untuk mengirim.",
                "Sheet read. Check the numbers on the screen, then press Confirm to send.", "action",
                Signal.CONFIRM_NEEDED)
REVIEW = _text("review", "Beberapa angka perlu diperiksa ({fields}). Perbaiki di layar, lalu tekan Konfirmasi; "
               "atau tekan Foto untuk memotret ulang.",
               "Some numbers need checking ({fields}). Correct them on the screen, then press Confirm; "
               "or press Capture to photograph again.", "action", Signal.REVIEW_NEEDED)
CHECKS_FAIL = _text("review.checks", "Angka terbaca, tetapi hitungan tidak cocok ({checks}). Periksa angka dengan "
                    "lembar; jika lembar memang tertulis begitu, tandai di layar, lalu Konfirmasi.",
                    "The numbers are read, but the sums do not add up ({checks}). Check them against the sheet; if "
                    "the sheet is written that way, mark it on the screen, then Confirm.", "action",
                    Signal.REVIEW_NEEDED)
QUEUED = _text("queued", "Hasil ditandatangani dan disimpan di kit; sedang dikirim ke kabupaten/kota.",
               "Result signed and saved on the kit; sending it to the district.", "info", Signal.QUEUED)
ACKNOWLEDGED = _text("acknowledged", "Hasil diterima dan dikonfirmasi oleh kabupaten/kota. Selesai.",
                     "The district received and confirmed the result. Done.", "info", Signal.ACKNOWLEDGED)
OFFLINE = _text("offline", "Hasil aman di kit; jaringan tidak tersedia. Hasil terkirim sendiri saat jaringan "
                "kembali. Biarkan kit menyala.",
                "Result safe on the kit; no network. It is sent by itself when the network returns. "
                "Keep the kit powered.", "action", Signal.OFFLINE)
FAULT = _text("fault", "Kit bermasalah. Hubungi teknisi.", "Kit fault. Call the technician.", "error", Signal.FAULT)
REPEATED_FAILURES = _text(
    "fault.repeated", "Kit bermasalah: {count} kegagalan ({kind}) berturut-turut. Hubungi teknisi; hasil yang "
    "sudah disimpan tetap dikirim.",
    "Kit fault: {count} failures ({kind}) in a row. Call the technician; results already saved are still being "
    "sent.", "error", Signal.FAULT)
NOT_READY = _text("fault.not_ready", "Kit belum siap: {problems}", "Kit not ready: {problems}", "error", Signal.FAULT)
CAMERA_FAILED = _text("camera_failed", "Kamera tidak memberi foto. Tekan Foto sekali lagi; jika berulang, hubungi "
                      "teknisi.", "{detail}", "error", Signal.REFUSED)
READER_FAILED = _text("reader_failed", "Formulir tidak dapat dibaca karena kesalahan kit. Tekan Foto sekali lagi; "
                      "jika berulang, hubungi teknisi.",
                      "The kit failed to read the sheet. Press Capture again; if it happens again, call the "
                      "technician.", "error", Signal.REFUSED)
SIGN_FAILED = _text("sign_failed", "Hasil tidak dapat ditandatangani: {error}. Hubungi teknisi.",
                    "The result could not be signed: {error}. Call the technician.", "error", None)
DISTRICT_REFUSED = _text("district_refused", "Kabupaten/kota menolak hasil ini ({why}). Hubungi teknisi.",
                         "The district refused this result ({why}). Call the technician.", "error", Signal.REFUSED)
PHOTO_REFUSED = _text("refused", "Foto ditolak. Tekan Foto sekali lagi.", "Photo refused. Press Capture again.",
                      "action", Signal.REFUSED)

# ------------------------------------------------------------------------------------------ the reader's refusals
#: The reader's refusal reasons (tpskit.edge.reader) and what the officer is told for each.
SIDES_ID = {"left": "kiri", "right": "kanan", "top": "atas", "bottom": "bawah"}
CORNERS_ID = {"top-left": "kiri atas", "top-right": "kanan atas", "bottom-right": "kanan bawah",
              "bottom-left": "kiri bawah"}

_REFUSALS: dict[str, tuple[str, str]] = {
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
REFUSALS: dict[str, Text] = {reason: _text(f"refused.{reason}", id_text, en_text, "action", Signal.REFUSED)
                             for reason, (id_text, en_text) in _REFUSALS.items()}


def refusal(reason: str, **params: str) -> OfficerMessage:
    """The message for a reader refusal; `params` fill the placeholders (corner, side, tps, form...), the
    Bahasa Indonesia names of corners and sides added here."""
    if "corner" in params:
        params = {**params, "corner_id": CORNERS_ID.get(params["corner"], params["corner"])}
    if "side" in params:
        params = {**params, "side_id": SIDES_ID.get(params["side"], params["side"])}
    return REFUSALS[reason](**params)


def review(labels: Iterable[str], failing_checks: Iterable[str] = ()) -> OfficerMessage:
    """The review message naming the fields to check by their printed labels; when every field is read but
    the sums fail, the message naming those sums."""
    names = ", ".join(labels)
    if not names and (checks := " ; ".join(failing_checks)):
        return CHECKS_FAIL(checks=checks)
    return REVIEW(fields=names or "-")


# ------------------------------------------------------------------------------------------ for a page to serve
ENTRIES: dict[str, Text] = {t.key: t for t in _ENTRIES}


def catalogue() -> list[dict[str, Any]]:
    """Every message as plain data: key, both languages (with their placeholders), level, and the signal with
    its lights and buzzer pattern (None where the message takes the signal of the state it is shown in)."""
    out = []
    for t in ENTRIES.values():
        row: dict[str, Any] = {"key": t.key, "id": t.id, "en": t.en, "level": t.level, "params": list(t.params),
                               "signal": None, "lights": None, "buzzer": None}
        if t.signal is not None:
            spec = SIGNALS[t.signal]
            row["signal"] = t.signal.value
            row["lights"] = None if spec.leds is None else {
                "green": str(spec.leds.green), "amber": str(spec.leds.amber), "red": str(spec.leds.red)}
            row["buzzer"] = {"pattern": str(spec.beep), "ms": list(BEEPS[spec.beep])}
        out.append(row)
    return out
