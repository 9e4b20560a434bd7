"""Every `tpskit ...` command a document, a unit file or a message names exists (the broker drop-in once
cited `tpskit provision broker-config`, which did not)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from tpskit.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
COMMAND = re.compile(r"(?<![\w.-])tpskit ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")
# outside a document's code, prose says "tpskit reads ..." or "tpskit kit daemon": there only a quoted or a
# path-called command counts
QUOTED = re.compile(r"(?:`|bin/)tpskit ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")


def _named() -> set[tuple[str, str, str | None]]:
    found = set()
    docs = [(p, "\n".join(CODE.findall(p.read_text()))) for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]]
    other = [(p, p.read_text()) for p in (ROOT / "systemd").iterdir()]
    other += [(p, p.read_text()) for d in ("provisioning", "district", "edge", "tpskit", "firmware", "bench")
              for p in (ROOT / d).rglob("*.py")]
    for path, text in docs:
        found |= {(path.relative_to(ROOT).as_posix(), m.group(1), m.group(2)) for m in COMMAND.finditer(text)}
    for path, text in other:
        found |= {(path.relative_to(ROOT).as_posix(), m.group(1), m.group(2)) for m in QUOTED.finditer(text)}
    return found


def test_every_tpskit_command_named_in_documents_units_and_messages_exists():
    ctx = click.Context(cli)
    named = _named()
    assert len(named) > 20, "the pattern found too few commands to mean anything"
    missing = []
    for where, group, sub in sorted(named, key=lambda x: (x[0], x[1], x[2] or "")):
        if group not in COMMANDS:
            missing.append(f"{where}: tpskit {group}")
            continue
        command = cli.get_command(ctx, group)
        if isinstance(command, click.Group) and sub is not None and command.get_command(ctx, sub) is None:
            missing.append(f"{where}: tpskit {group} {sub}")
    assert missing == []
