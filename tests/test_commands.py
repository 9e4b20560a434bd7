"""The command-line pieces the kit's and the district's commands share (tpskit/commands.py)."""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest

from tpskit.commands import load_or_fail, wants_json
from tpskit.config import ConfigError


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_and_table_exclude_each_other_and_neither_means_json_unless_a_person_reads(monkeypatch):
    with pytest.raises(click.UsageError):
        wants_json(True, True)
    assert wants_json(True, False) and not wants_json(False, True)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert wants_json(False, False)
    monkeypatch.setattr("sys.stdout", _Tty())
    assert not wants_json(False, False)


def test_a_configuration_error_becomes_the_commands_error_message():
    def broken(path: Path) -> None:
        raise ConfigError(f"{path}: invalid configuration\n  kit.tps: 13 digits")

    with pytest.raises(click.ClickException, match=r"kit\.tps: 13 digits"):
        load_or_fail(broken, Path("kit.toml"))
    assert load_or_fail(lambda p: p.name, Path("/etc/tpskit/kit.toml")) == "kit.toml"
