"""The kit outbox: durable, sequence numbers allocated with the insert, nothing deleted."""

from __future__ import annotations

import sqlite3

import pytest

from tpskit.edge.outbox import Outbox, Signed


def _signed(seq: int) -> Signed:
    return Signed(f"sub-{seq:04d}-aaaa", "3201012001001", f"h.p{seq}.s", f"{seq:064d}", b"\xff\xd8jpeg", "e" * 64)


def test_outbox_is_wal_with_full_sync(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    box.close()


def test_sequence_numbers_increase_and_survive_reopening(tmp_path):
    with Outbox(tmp_path / "o.sqlite") as box:
        assert [box.add(_signed).seq for _ in range(3)] == [1, 2, 3]
    with Outbox(tmp_path / "o.sqlite") as box:
        assert box.add(_signed).seq == 4
        assert [r.state for r in box.rows()] == ["queued"] * 4


def test_a_failed_signing_stores_nothing_and_uses_no_sequence_number(tmp_path):
    with Outbox(tmp_path / "o.sqlite") as box:
        box.add(_signed)

        def broken(seq: int) -> Signed:
            raise RuntimeError("key unreadable")

        with pytest.raises(RuntimeError):
            box.add(broken)
        assert box.add(_signed).seq == 2
        assert len(box.rows()) == 2


def test_states_move_forward_only_and_the_first_answer_is_kept(tmp_path):
    with Outbox(tmp_path / "o.sqlite") as box:
        r = box.add(_signed)
        assert box.next_pending().submission_id == r.submission_id
        box.mark_sent(r.submission_id)
        assert box.get(r.submission_id).state == "sent"
        assert box.mark_answered(r.submission_id, "accepted", None, "receipt-1")
        assert not box.mark_answered(r.submission_id, "duplicate", None, "receipt-2")
        box.mark_sent(r.submission_id)  # a late PUBACK must not undo the acknowledgement
        row = box.get(r.submission_id)
        assert (row.state, row.receipt) == ("acknowledged", "receipt-1")
        assert box.next_pending() is None
        assert box.counts() == {"queued": 0, "sent": 0, "acknowledged": 1, "rejected": 0}
    con = sqlite3.connect(tmp_path / "o.sqlite")
    assert con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1  # kept as the receipt
