"""Long steps show progress to a person at a terminal, and nothing extra to scripts, logs or CI."""

from __future__ import annotations

import os
import pty
import sys
import time

import pytest

from tpskit import progress
from tpskit.cli import main


@pytest.fixture
def terminal(monkeypatch):
    """A function that puts stderr on a pseudo-terminal (called in the test itself: pytest's capture sets
    sys.stderr again between fixtures and the test) and returns what the terminal received so far."""
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w", buffering=1)
    monkeypatch.delenv("CI", raising=False)

    def received() -> str:
        if sys.stderr is not stream:
            monkeypatch.setattr(sys, "stderr", stream)
            return ""
        stream.flush()
        os.set_blocking(master, False)
        chunks = []
        while True:
            try:
                chunks.append(os.read(master, 65536))
            except (BlockingIOError, OSError):
                break
        return b"".join(chunks).decode(errors="replace")

    yield received
    stream.close()
    os.close(master)


def test_a_person_at_a_terminal_sees_the_seconds_left_while_the_kit_waits(terminal):
    terminal()
    calls = []

    def no_press(seconds: float) -> None:
        calls.append(seconds)
        time.sleep(seconds)

    assert progress.wait_visibly("waiting for CAPTURE", 1.2, no_press) is None
    assert "waiting for CAPTURE (1 s left)" in terminal()
    assert len(calls) >= 2 and max(calls) <= 0.5  # polled in slices, so the countdown moves


def test_the_same_wait_in_ci_prints_nothing_and_polls_once(terminal, monkeypatch):
    monkeypatch.setenv("CI", "true")
    terminal()
    calls = []
    assert progress.wait_visibly("waiting for CAPTURE", 0.3, lambda s: calls.append(s) or "pressed") == "pressed"
    assert calls == [0.3] and terminal() == ""


def test_form_fill_shows_a_bar_at_a_terminal_and_nothing_when_piped(terminal, tmp_path, capsys, monkeypatch):
    terminal()
    assert main(["form", "fill", "PPWP", "--tps", "3201012001001", "--count", "1", "-o", str(tmp_path / "a")]) == 0
    assert "1/1" in terminal()
    monkeypatch.undo()  # stderr is pytest's captured stream again, not a terminal
    capsys.readouterr()
    assert main(["form", "fill", "PPWP", "--tps", "3201012001001", "--count", "1", "-o", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().err == ""


def test_each_yields_every_item_and_closes_its_bar(terminal):
    terminal()
    assert list(progress.each(iter(range(5)), 5, "photos")) == [0, 1, 2, 3, 4]
    shown = terminal()
    assert "photos" in shown and "5/5" in shown
