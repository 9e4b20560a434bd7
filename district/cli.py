"""`tpskit district`: the district service and its reports."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from tpskit.commands import config_option as _config_option
from tpskit.commands import load_or_fail
from tpskit.district.config import DEFAULT_DISTRICT_CONFIG, DistrictConfig, load_district_config

config_option = _config_option(DEFAULT_DISTRICT_CONFIG, "TPSKIT_DISTRICT_CONFIG", "District configuration file.")


def load_config(path: Path) -> DistrictConfig:
    return load_or_fail(load_district_config, path)


@click.group()
def district() -> None:
    """District service: serve, tally, status, refusals, export, check-config."""


@district.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration and the files it names; exit 0 when usable, 1 otherwise."""
    cfg = load_config(config_path)
    missing = [str(p) for p in (cfg.identity.key, cfg.identity.certificate, cfg.identity.ca, cfg.district.tps_list)
               if not Path(p).exists()]
    if missing:
        raise click.ClickException(f"{config_path}: files not found: {', '.join(missing)}")
    from tpskit.trust.identity import TrustError
    from tpskit.trust.tps import read_tps_csv

    try:
        n = len(read_tps_csv(cfg.district.tps_list))
    except TrustError as e:
        raise click.ClickException(str(e)) from e
    from tpskit.district.service import missing_share_identities

    shares = max(1, min(cfg.ingest.processes, n))
    lacking = missing_share_identities(cfg, shares)
    if lacking:
        raise click.ClickException(f"{config_path}: [ingest] processes = {shares} needs one certificate per process; "
                                   f"missing {', '.join(lacking)}. Fix: tpskit provision service-shares --dir "
                                   f"DISTRICT --processes {shares}")
    from tpskit.district.transport import lean_problem

    if cfg.ingest.lean and (problem := lean_problem()) is not None:
        raise click.ClickException(f"{config_path}: {problem}")
    schema_error = newer_database(cfg.database.url)
    if schema_error is not None:
        raise click.ClickException(f"{config_path}: {schema_error}")
    click.echo(f"{config_path}: ok (district {cfg.district.id}, {n} TPS, database {cfg.database.url.split(':')[0]})")


def newer_database(url: str) -> str | None:
    """Why the service would refuse the database (newer than this release), read only. None also when the
    database is not there yet or cannot be reached now: the service builds it, or says why at start."""
    from sqlalchemy.exc import OperationalError

    from tpskit.district.db import make_engine
    from tpskit.district.schema import SchemaError, refuse_newer

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return None  # connecting would create an empty file
    engine = make_engine(url, writer=False)
    try:
        refuse_newer(engine)
    except SchemaError as e:
        return str(e)
    except OperationalError:
        return None
    finally:
        engine.dispose()
    return None


@district.command()
@config_option
def serve(config_path: Path) -> None:
    """Subscribe to every TPS, verify, store, acknowledge ([ingest] processes: in several processes, each
    serving a share of the TPS list). Runs until SIGTERM / Ctrl-C."""
    from tpskit.district.service import serve as run
    from tpskit.events import setup_logging

    setup_logging()
    cfg = load_config(config_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if run(cfg, stop):
        sys.exit(1)


@district.command()
@config_option
@click.option("--bind", default=None, help="Address to listen on (default: [dashboard] bind, loopback).")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port (default: [dashboard] port).")
def dashboard(config_path: Path, bind: str | None, port: int | None) -> None:
    """Serve only the dashboard (read-only), e.g. on another machine reading the same PostgreSQL database;
    `tpskit district serve` serves it too. Runs until SIGTERM / Ctrl-C."""
    from tpskit.district.dashboard import Dashboard
    from tpskit.events import setup_logging

    setup_logging()
    cfg = load_config(config_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Dashboard(cfg, host=bind, port=port) as d:
        click.echo(f"dashboard of district {cfg.district.id}: {d.url}/ (Ctrl-C stops)", err=True)
        stop.wait()


@district.command()
@config_option
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Also write CSV here.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write JSON here.")
@click.option("--table/--no-table", "as_table", default=None,
              help="Print the table (default: only when stdout is a terminal; otherwise the JSON).")
def tally(config_path: Path, csv_path: Path | None, json_path: Path | None, as_table: bool | None) -> None:
    """Per-candidate totals per TPS, village, kecamatan and regency; reported and in-review counts."""
    import json

    from tpskit.district import tally as t
    from tpskit.district.db import open_db
    from tpskit.trust.tps import read_tps_csv

    cfg = load_config(config_path)
    engine = open_db(cfg.database.url)
    tallies = t.compute(engine, read_tps_csv(cfg.district.tps_list))
    if as_table if as_table is not None else sys.stdout.isatty():
        click.echo(t.render_text(tallies), nl=False)
    else:
        click.echo(json.dumps([x.to_json() for x in tallies], ensure_ascii=False))
    if csv_path:
        t.write_csv(tallies, csv_path)
    if json_path:
        t.write_json(tallies, json_path)


@district.command()
@config_option
@click.option("--signed", "signed_path", type=click.Path(path_type=Path), required=True,
              help="Write the observers' export: a first line listing the TPS, then every accepted result as "
                   "received (compact JWS), with its arrival time and whether it is current or superseded.")
def export(config_path: Path, signed_path: Path) -> None:
    """Export the signed results for observers (re-verify and recount with
    `tpskit verify FILE --ca ca.pem --tally`)."""
    from tpskit.district.db import open_db
    from tpskit.district.tally import export_signed
    from tpskit.trust.tps import read_tps_csv

    cfg = load_config(config_path)
    n = export_signed(open_db(cfg.database.url), signed_path, district=cfg.district.id,
                      tps=read_tps_csv(cfg.district.tps_list))
    click.echo(f"{n} signed results written to {signed_path}")


def _snapshot(cfg: DistrictConfig):  # type: ignore[no-untyped-def]
    from tpskit.district.db import open_db
    from tpskit.district.status import read_snapshot
    from tpskit.trust.tps import read_tps_csv

    engine = open_db(cfg.database.url)
    try:
        return read_snapshot(engine, read_tps_csv(cfg.district.tps_list), cfg.district.revocations)
    finally:
        engine.dispose()


def _emit(rows: list[dict], columns: list[str], as_table: bool | None, csv_path: Path | None,
          json_path: Path | None) -> None:
    import json

    from tpskit.district.status import render_table, to_csv

    if as_table if as_table is not None else sys.stdout.isatty():
        click.echo(render_table(rows, columns), nl=False)
    else:
        click.echo(json.dumps(rows, ensure_ascii=False))
    if csv_path:
        csv_path.write_text(to_csv(rows), encoding="utf-8")
    if json_path:
        json_path.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")


_out_options = [
    click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Also write CSV here."),
    click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write JSON here."),
    click.option("--table/--no-table", "as_table", default=None,
                 help="Print a table (default: only when stdout is a terminal; otherwise JSON)."),
]


def _with_out(f):  # type: ignore[no-untyped-def]
    for opt in reversed(_out_options):
        f = opt(f)
    return f


@district.command()
@config_option
@click.option("--template", default=None, help="Form template (default: the one with the most results).")
@click.option("--status", "status_filter", default=None,
              type=click.Choice(["ok", "corrected", "slip", "review", "revoked", "refused", "not_reported"]),
              help="Only TPS in this status.")
@click.option("--kecamatan", default=None, help="Only this kecamatan (6-digit code or name).")
@click.option("--village", default=None, help="Only this village (10-digit code or name).")
@click.option("--areas", is_flag=True, help="Counts per kecamatan and village instead of one line per TPS.")
@_with_out
def status(config_path: Path, template: str | None, status_filter: str | None, kecamatan: str | None,
           village: str | None, areas: bool, csv_path: Path | None, json_path: Path | None,
           as_table: bool | None) -> None:
    """Per-TPS status (reported ok, with officer corrections, officer slip, in review, by a revoked kit,
    refused, not yet reported), or counts per kecamatan and village: what the dashboard shows."""
    from tpskit.district.status import STATUSES, filter_rows

    snap = _snapshot(load_config(config_path))
    if areas:
        rows = [a.to_json() for a in snap.areas(template)
                if (not kecamatan or kecamatan in (a.code[:6], a.name, a.parent))]
        columns = ["level", "code", "name", "tps_total", *STATUSES]
    else:
        picked = filter_rows(snap.rows(template), status=status_filter, kecamatan=kecamatan, village=village)
        rows = [r.to_json() for r in picked]
        columns = ["tps", "village", "kecamatan", "status", "kit", "received_at", "submissions", "corrections",
                   "last_refusal_reason"]
    _emit(rows, columns, as_table, csv_path, json_path)


@district.command()
@config_option
@click.option("--tps", default=None, help="Only refusals of this TPS.")
@click.option("--reason", default=None, help="Only this reason (e.g. bad_signature).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1), help="Newest first, at most.")
@_with_out
def refusals(config_path: Path, tps: str | None, reason: str | None, limit: int, csv_path: Path | None,
             json_path: Path | None, as_table: bool | None) -> None:
    """Refused messages, newest first: time, TPS, kit, reason in words and the detail."""
    snap = _snapshot(load_config(config_path))
    picked = [r for r in snap.refusals if (not tps or r.tps == tps) and (not reason or r.reason == reason)][:limit]
    rows = [r.to_json() for r in picked]
    _emit(rows, ["received_at", "tps", "kit", "reason", "reason_words"], as_table, csv_path, json_path)
