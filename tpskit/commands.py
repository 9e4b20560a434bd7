"""Pieces every role's command line shares: the `--config` option, loading a configuration into a clean
error, and the `--json` / `--table` choice. The kit's, the district's and the national tier's commands use
these, so the sides cannot drift in how they are called.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")


def config_option(default: Path, envvar: str, help_text: str) -> Callable[[Any], Any]:
    """`--config PATH` (into the `config_path` argument), with its default and environment variable."""
    return click.option("--config", "config_path", type=click.Path(path_type=Path), default=default,
                        show_default=True, envvar=envvar, help=help_text)


def load_or_fail(load: Callable[[Path], T], path: Path) -> T:
    """`load(path)`, a configuration error turned into a click error (the message, no traceback)."""
    # Imported here: the configuration base pulls in pydantic, which `tpskit read` (it has no
    # configuration) must not pay for in memory (issue 8).
    from tpskit.config import ConfigError

    try:
        return load(path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


def wants_json(as_json: bool, as_table: bool) -> bool:
    """`--json` and `--table` exclude each other; with neither, JSON when stdout is not a terminal."""
    if as_json and as_table:
        raise click.UsageError("--json and --table exclude each other")
    return as_json or (not as_table and not sys.stdout.isatty())
