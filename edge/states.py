"""The kit's states (DESIGN.md "Kit states") and the only transitions allowed between them.

idle -> capturing -> reading -> confirm | review -> signing -> queued -> sent -> acknowledged, plus rejected
(a refused photo or a district refusal: the red light and the officer message stay until the next
Capture, which works as from idle) and fault. queued, sent
and acknowledged are not busy: the officer may capture the next sheet while delivery goes on behind.
"""

from __future__ import annotations

from enum import StrEnum

from tpskit.firmware.controls import Signal


class KitState(StrEnum):
    IDLE = "idle"
    CAPTURING = "capturing"
    READING = "reading"
    CONFIRM = "confirm"
    REVIEW = "review"
    SIGNING = "signing"
    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    FAULT = "fault"


S = KitState
#: A press in one of these is ignored with a short beep: a job is running.
BUSY: frozenset[KitState] = frozenset({S.CAPTURING, S.READING, S.SIGNING})
#: States holding a reading that waits for the officer (Confirm, corrections, or Capture to retake).
PENDING: frozenset[KitState] = frozenset({S.CONFIRM, S.REVIEW})
_AFTER_SEND = frozenset({S.QUEUED, S.SENT, S.ACKNOWLEDGED})

TRANSITIONS: dict[KitState, frozenset[KitState]] = {
    S.IDLE: frozenset({S.CAPTURING, S.QUEUED, S.CONFIRM, S.REVIEW, S.FAULT}),  # queued/confirm/review: restored
    S.CAPTURING: frozenset({S.READING, S.REJECTED, S.FAULT}),
    S.READING: frozenset({S.CONFIRM, S.REVIEW, S.SIGNING, S.REJECTED, S.FAULT}),
    S.CONFIRM: frozenset({S.SIGNING, S.CAPTURING, S.REVIEW, S.FAULT}),
    S.REVIEW: frozenset({S.SIGNING, S.CAPTURING, S.CONFIRM, S.FAULT}),
    S.SIGNING: frozenset({S.QUEUED, S.CONFIRM, S.REVIEW, S.FAULT}),
    S.QUEUED: frozenset({S.SENT, S.ACKNOWLEDGED, S.REJECTED, S.CAPTURING, S.FAULT}),
    S.SENT: frozenset({S.QUEUED, S.ACKNOWLEDGED, S.REJECTED, S.CAPTURING, S.FAULT}),
    S.ACKNOWLEDGED: frozenset({S.CAPTURING, S.FAULT}),
    S.REJECTED: frozenset({S.IDLE, S.CAPTURING, S.FAULT}),
    # Out of fault only when its reason clears by itself (time sync fixed the clock).
    S.FAULT: frozenset({S.IDLE, S.QUEUED, S.CONFIRM, S.REVIEW}),
}

#: The light/buzzer pattern each state shows on entry (rejected and fault add the officer message).
STATE_SIGNAL: dict[KitState, Signal] = {
    S.IDLE: Signal.READY,
    S.CAPTURING: Signal.WORKING,
    S.READING: Signal.WORKING,
    S.CONFIRM: Signal.CONFIRM_NEEDED,
    S.REVIEW: Signal.REVIEW_NEEDED,
    S.SIGNING: Signal.WORKING,
    S.QUEUED: Signal.QUEUED,
    S.SENT: Signal.QUEUED,
    S.ACKNOWLEDGED: Signal.ACKNOWLEDGED,
    S.REJECTED: Signal.REFUSED,
    S.FAULT: Signal.FAULT,
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(old: KitState, new: KitState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"kit state {old} -> {new} is not allowed")


def capture_allowed(state: KitState) -> bool:
    """Capture starts a new sheet from idle, after a refusal, over a pending reading (retake) or while an
    earlier result is being delivered."""
    return state in (S.IDLE, S.REJECTED) or state in PENDING or state in _AFTER_SEND
