"""Progress on long steps, shown only to a person watching: stderr is a terminal and CI is not set.

Scripts, logs and CI see nothing extra (a progress bar in a CI log is noise, and stdout stays for
results). Nothing here changes what a step does or how long it waits.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TypeVar

import click

T = TypeVar("T")


def watched(stream: IO[str] | None = None) -> bool:
    """A person is watching `stream` (stderr by default): it is a terminal and this is not CI."""
    stream = stream or sys.stderr
    if os.environ.get("CI"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def progress(items: Iterable[T], length: int, label: str) -> Iterator[Iterable[T]]:
    """`with progress(range(n), n, "sheets") as it: for i in it: ...`: a bar with the count and the time
    left on stderr when watched, the bare items otherwise."""
    if not watched():
        yield items
        return
    with click.progressbar(items, length=length, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar


def each(items: Iterable[T], length: int, label: str) -> Iterator[T]:
    """`for x in each(xs, len(xs), "photos"):` the same as `progress`, for a loop that is not worth a
    `with` block: the bar closes when the loop ends (or is left)."""
    with progress(items, length, label) as it:
        yield from it


def wait_visibly(label: str, timeout: float, poll: Callable[[float], T | None]) -> T | None:
    """Call `poll(seconds)` (which waits at most that long and returns a result or None) until it returns
    a result or `timeout` runs out; a person watching sees `label` with the seconds left, on one line."""
    if not watched():
        return poll(timeout)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            click.echo(f"\r{label} ({left:.0f} s left) ", nl=False, err=True)
            got = poll(min(left, 0.5))
            if got:
                return got
    finally:
        click.echo("\r" + " " * (len(label) + 16) + "\r", nl=False, err=True)
