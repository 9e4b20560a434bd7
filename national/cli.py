"""`tpskit national`: the national workers and the national tally."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from tpskit.commands import config_option as _config_option
from tpskit.commands import load_or_fail
from tpskit.national.config import DEFAULT_NATIONAL_CONFIG, NationalConfig, load_national_config

config_option = _config_option(DEFAULT_NATIONAL_CONFIG, "TPSKIT_NATIONAL_CONFIG", "National configuration file.")


def load_config(path: Path) -> NationalConfig:
    return load_or_fail(load_national_config, path)


@click.group()
def national() -> None:
    """National tier: workers (verify again, store by province) and the national tally."""


@national.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration and the files it names; exit 0 when usable, 1 otherwise."""
    cfg = load_config(config_path)
    missing = [str(p) for d in cfg.districts for p in (d.ca, d.tps_list) if not Path(p).exists()]
    if missing:
        raise click.ClickException(f"{config_path}: files not found: {', '.join(missing)}")
    click.echo(f"{config_path}: ok ({len(cfg.districts)} districts, {len(cfg.nats.servers)} NATS nodes)")


@national.command()
@config_option
def work(config_path: Path) -> None:
    """Consume the national stream: verify every result again, store it once, acknowledge after the commit.
    Run as many as needed (they share one durable consumer). Runs until SIGTERM / Ctrl-C."""
    from tpskit.events import setup_logging
    from tpskit.national.schema import SchemaError
    from tpskit.national.worker import NationalWorker

    setup_logging()
    try:
        worker = NationalWorker(load_config(config_path))
    except SchemaError as e:  # a later release upgraded the database: say so, no traceback
        raise click.ClickException(str(e)) from e
    signal.signal(signal.SIGTERM, lambda *_: worker.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop_event.set())
    worker.run()


@national.command()
@config_option
@click.option("--table/--no-table", "as_table", default=None,
              help="Print the table (default: only when stdout is a terminal; otherwise the JSON).")
def tally(config_path: Path, as_table: bool | None) -> None:
    """Per-candidate totals per TPS, village, kecamatan, regency, province and nation."""
    from tpskit.national.db import open_national_db
    from tpskit.national.tally import compute
    from tpskit.tally import province_of, render_text
    from tpskit.trust.tps import read_tps_csv

    cfg = load_config(config_path)
    tps = {code: info for d in cfg.districts for code, info in read_tps_csv(d.tps_list).items()}
    engine = open_national_db(cfg.database.url, {province_of(c) for c in tps})
    tallies = compute(engine, tps)
    if as_table if as_table is not None else sys.stdout.isatty():
        click.echo(render_text(tallies), nl=False)
    else:
        click.echo(json.dumps([x.to_json() for x in tallies], ensure_ascii=False))


@national.command()
@config_option
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8090, show_default=True, type=int, help="Port to serve on (0: any free one).")
@click.option("--poll-s", default=5.0, show_default=True, type=float,
              help="Recompute the tally from national storage at most this often.")
def dashboard(config_path: Path, bind: str, port: int, poll_s: float) -> None:
    """Serve the national tally as a read-only web page until SIGTERM / Ctrl-C."""
    import threading

    from tpskit.national.dashboard import national_dashboard, trusted_tps
    from tpskit.national.db import open_national_db
    from tpskit.tally import province_of

    cfg = load_config(config_path)
    engine = open_national_db(cfg.database.url, {province_of(c) for c in trusted_tps(cfg)})
    server = national_dashboard(engine, cfg, bind, port, poll_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    click.echo(f"national tally at {server.url}", err=True)
    try:
        stop.wait()
    finally:
        server.stop()
        engine.dispose()
