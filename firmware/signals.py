"""The officer's signals: every light and buzzer pattern the kit shows, one row of the SIGNALS table each.

Kept apart from `controls` (which drives them: GPIO, a socket, a thread) so that what only names a signal,
the kit's texts and through them the reader's refusals, imports the table alone (`tpskit read`'s memory,
issue 8)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class Blink(StrEnum):
    OFF = "off"
    ON = "on"
    SLOW = "slow"  # 1 Hz: 500 ms on, 500 ms off
    FAST = "fast"  # 4 Hz: 125 ms on, 125 ms off


BLINK_PERIOD_S: dict[Blink, float] = {Blink.SLOW: 1.0, Blink.FAST: 0.25}


class Beep(StrEnum):
    NONE = "none"
    SHORT = "short"
    DOUBLE = "double"
    TRIPLE = "triple"
    LONG = "long"
    ALARM = "alarm"


# Buzzer patterns as alternating on/off durations in milliseconds.
BEEPS: dict[Beep, tuple[int, ...]] = {
    Beep.NONE: (),
    Beep.SHORT: (60,),
    Beep.DOUBLE: (80, 120, 80),
    Beep.TRIPLE: (150, 100, 150, 100, 150),
    Beep.LONG: (600,),
    Beep.ALARM: (400, 200, 400, 200, 400, 200, 400),
}


@dataclass(frozen=True)
class Leds:
    green: Blink = Blink.OFF
    amber: Blink = Blink.OFF
    red: Blink = Blink.OFF


KEEP: Leds | None = None  # a signal that only beeps leaves the lights as they are


@dataclass(frozen=True)
class SignalSpec:
    leds: Leds | None
    beep: Beep
    meaning: str


class Signal(Enum):
    STARTING = "starting"
    READY = "ready"
    WORKING = "working"
    BUSY_BEEP = "busy_beep"
    REFUSED = "refused"
    CONFIRM_NEEDED = "confirm_needed"
    REVIEW_NEEDED = "review_needed"
    QUEUED = "queued"
    ACKNOWLEDGED = "acknowledged"
    OFFLINE = "offline"
    FAULT = "fault"
    SELFTEST = "selftest"


# THE table: every light and buzzer pattern the officer can see or hear. The README shows it (readme_table()).
SIGNALS: dict[Signal, SignalSpec] = {
    Signal.STARTING: SignalSpec(Leds(amber=Blink.FAST), Beep.NONE,
                                "Starting up or checking itself. Wait."),
    Signal.READY: SignalSpec(Leds(green=Blink.ON), Beep.NONE,
                             "Ready. Lay the sheet on the stand and press Capture."),
    Signal.WORKING: SignalSpec(Leds(amber=Blink.SLOW), Beep.SHORT,
                               "Photographing and reading the sheet. Do not move it."),
    Signal.BUSY_BEEP: SignalSpec(KEEP, Beep.SHORT,
                                 "A press while the kit is busy is ignored (lights unchanged)."),
    Signal.REFUSED: SignalSpec(Leds(red=Blink.FAST), Beep.TRIPLE,
                               "Photo refused. Read the message (screen or technician), fix the sheet or the "
                               "light, press Capture again."),
    Signal.CONFIRM_NEEDED: SignalSpec(Leds(green=Blink.SLOW), Beep.DOUBLE,
                                      "Sheet read. Check the values on the screen, press Confirm to send."),
    Signal.REVIEW_NEEDED: SignalSpec(Leds(amber=Blink.ON, green=Blink.SLOW), Beep.DOUBLE,
                                     "Some numbers need checking. Correct them on the screen, then press "
                                     "Confirm."),
    Signal.QUEUED: SignalSpec(Leds(green=Blink.ON, amber=Blink.SLOW), Beep.SHORT,
                              "Signed and saved on the kit; sending to the district."),
    Signal.ACKNOWLEDGED: SignalSpec(Leds(green=Blink.ON), Beep.LONG,
                                    "The district received and confirmed the result. Done."),
    Signal.OFFLINE: SignalSpec(Leds(green=Blink.ON, amber=Blink.ON), Beep.NONE,
                               "Result safe on the kit; no network. It is sent by itself when the network "
                               "returns. Keep the kit powered."),
    Signal.FAULT: SignalSpec(Leds(red=Blink.ON), Beep.ALARM,
                             "Kit fault. Call the technician; the screen and log say what failed."),
    Signal.SELFTEST: SignalSpec(Leds(Blink.FAST, Blink.FAST, Blink.FAST), Beep.SHORT,
                                "Technician self-test is running."),
}
