"""`tpskit kit`: commands run on the kit. Each command is a small function; add new ones with
`@kit.command()` and `@config_option` (the config is loaded by `load_config`, which exits with the
config error's message, key path included)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tpskit.commands import config_option as _config_option
from tpskit.commands import load_or_fail
from tpskit.config import ConfigError
from tpskit.edge.config import DEFAULT_KIT_CONFIG, KitConfig, load_kit_config

config_option = _config_option(DEFAULT_KIT_CONFIG, "TPSKIT_KIT_CONFIG", "Kit configuration file.")


def load_config(path: Path) -> KitConfig:
    return load_or_fail(load_kit_config, path)


def _logging() -> None:
    from tpskit.events import setup_logging

    setup_logging()


@click.group()
def kit() -> None:
    """Run and maintain the kit: run, selftest, check-config, keygen, submit, deliver, receipts."""


@kit.command()
@click.option("--kit-id", required=True, help="This kit's id (becomes the certificate CN and MQTT user).")
@click.option("--tps", required=True, help="13-digit TPS code the kit will serve.")
@click.option("--key", "key_path", type=click.Path(path_type=Path), default=Path("/var/lib/tpskit/kit.key"),
              show_default=True, help="Where the private key lives (created 0600, never overwritten).")
@click.option("--csr", "csr_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for kit.csr (default: next to the key).")
@click.option("--user", "service_user", default="tpskit", show_default=True,
              help="Run as root: the kit service's user, who then owns the key (0600) and its folder (0750).")
def keygen(kit_id: str, tps: str, key_path: Path, csr_dir: Path | None, service_user: str) -> None:
    """Create the kit's Ed25519 key and a certificate request naming the kit id and TPS."""
    import os

    from tpskit.layout import LayoutError, Owner, set_owner
    from tpskit.trust.csr import keygen as make
    from tpskit.trust.identity import TrustError
    from tpskit.trust.keys import KeyFileError

    owner = Owner(service_user=service_user)
    try:
        if os.geteuid() == 0:
            owner.ids(service_user)  # before anything is written
            if not key_path.parent.exists():
                key_path.parent.mkdir(parents=True)
                set_owner(key_path.parent, 0o750, owner, user=service_user)
        key, csr = make(csr_dir or key_path.parent, kit_id, tps, key_path=key_path)
        set_owner(key, 0o600, owner, user=service_user)
        set_owner(csr, 0o644, owner, user=service_user)
    except (TrustError, LayoutError, KeyFileError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"key: {key} (mode 0600; it never leaves this kit)")
    click.echo(f"certificate request: {csr} -> take it to the district: tpskit provision sign-csr {csr.name}")


@kit.command()
@click.argument("reading", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--photo", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="The evidence JPEG the reading came from.")
@click.option("--deliver/--no-deliver", default=True, show_default=True,
              help="Deliver now and wait for the district's receipt, or only sign and queue.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the receipt.")
@config_option
def submit(reading: Path, photo: Path, deliver: bool, timeout: float, config_path: Path) -> None:
    """Sign a confirmed reading (JSON of `tpskit read --json`) and queue it; optionally deliver it."""
    from tpskit.edge.readiness import startup_problems
    from tpskit.edge.reading import Reading, ReadingError
    from tpskit.edge.submit import SubmitError, sign_and_queue, utcnow
    from tpskit.trust.keys import KeyFileError

    _logging()
    cfg = load_config(config_path)
    problems = startup_problems(cfg, utcnow())  # what check-config says, before anything is signed
    if problems:
        raise click.ClickException("this kit must not sign yet:\n" + "\n".join(f"  {p.key}: {p.message}"
                                                                            for p in problems))
    try:
        row = sign_and_queue(cfg, Reading.from_dict(json.loads(reading.read_text())), photo.read_bytes())
    except (ReadingError, SubmitError, KeyFileError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"queued submission {row.submission_id} seq {row.seq}")
    if not deliver:
        return
    from tpskit.edge.deliver import Delivery

    with Delivery(cfg) as d:
        r = d.wait_answered(row.submission_id, timeout)
    if r is None:
        raise click.ClickException(f"no receipt within {timeout:.0f} s; the result stays queued and "
                                   "`tpskit kit deliver` (or the kit service) will keep trying")
    click.echo(f"{r.state}: {r.ack_status}" + (f" ({r.reason})" if r.reason else ""))
    if r.state == "rejected":
        sys.exit(3)


@kit.command()
@click.option("--until-idle", is_flag=True, help="Exit once every queued result has its receipt.")
@click.option("--timeout", type=float, default=None, help="With --until-idle: give up after this many seconds.")
@config_option
def deliver(until_idle: bool, timeout: float | None, config_path: Path) -> None:
    """Deliver queued results and collect receipts (runs until stopped, or until idle)."""
    import signal
    import threading

    from tpskit.edge.deliver import Delivery

    _logging()
    cfg = load_config(config_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Delivery(cfg) as d:
        if until_idle:
            if not d.wait_idle(timeout if timeout is not None else float("inf")):
                raise click.ClickException("results still pending: " + json.dumps(d.outbox.counts()))
            return
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass


@kit.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per result.")
@config_option
def receipts(as_json: bool, config_path: Path) -> None:
    """List every signed result in the outbox with its state and the district's receipt."""
    from tpskit.edge.outbox import Outbox, OutboxTooNew

    cfg = load_config(config_path)
    try:
        box = Outbox(cfg.outbox_path)
    except OutboxTooNew as e:
        raise click.ClickException(str(e)) from e
    with box:
        for r in box.rows():
            rec: dict[str, Any] = {"seq": r.seq, "submission_id": r.submission_id, "state": r.state,
                                   "ack": r.ack_status, "reason": r.ack_reason, "last_error": r.last_error,
                                   "envelope_sha256": r.envelope_sha256}
            if as_json:
                click.echo(json.dumps({**rec, "receipt": r.receipt}))
            else:
                click.echo(f"#{r.seq} {r.submission_id} {r.state}" + (f" ({r.ack_status})" if r.ack_status else "")
                           + (f" reason: {r.ack_reason}" if r.ack_reason else "")
                           + (f" last error: {r.last_error}" if r.last_error and r.state == "queued" else ""))


# ------------------------------------------------------------------------------------------ kit runtime
@kit.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the kit file and the kit's readiness (key, certificate, TPS, clock); exit 0 or 1.

    Runs as ExecStartPre of tpskit-kit.service: a bad file or an unready kit stops there, with the key path
    and the fix in the journal.
    """
    from tpskit.edge.readiness import startup_problems

    try:
        cfg = load_kit_config(config_path)
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    problems = startup_problems(cfg)
    if problems:
        click.echo(f"{config_path}: the kit must not capture yet", err=True)
        for p in problems:
            click.echo(f"  {p.key}: {p.message}", err=True)
        sys.exit(1)
    click.echo(f"{config_path}: ok (kit {cfg.kit.id}, TPS {cfg.kit.tps}, camera {cfg.camera.backend}, "
               f"controls {cfg.controls.backend})")


@kit.command()
@config_option
def run(config_path: Path) -> None:
    """Run the kit daemon: buttons, camera, reader, confirmation, signing, delivery (systemd Type=notify)."""
    import signal
    import threading

    from tpskit.edge.daemon import run_daemon

    _logging()
    cfg = load_config(config_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sys.exit(run_daemon(cfg, stop))


@kit.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check.")
@config_option
def selftest(as_json: bool, config_path: Path) -> None:
    """Technician checklist: camera, buttons, lights, buzzer, clock, key, certificate, broker, disk, model."""
    from tpskit.edge.selftest import run_selftest

    _logging()
    cfg = load_config(config_path)
    results = run_selftest(cfg, echo=(lambda line: click.echo(line, err=True)) if as_json else click.echo)
    for r in results:
        if as_json:
            click.echo(json.dumps({"check": r.name, "passed": r.passed, "detail": r.detail}))
    failed = [r for r in results if not r.passed]
    if not as_json:
        click.echo(f"{len(results) - len(failed)}/{len(results)} checks passed"
                   + (f"; FAILED: {', '.join(r.name for r in failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


@kit.command()
@click.argument("button", type=click.Choice(["capture", "confirm"]))
@config_option
def press(button: str, config_path: Path) -> None:
    """Development: press a button of a kit running simulated controls (through its control socket)."""
    from tpskit.firmware.sim_client import press as sim_press

    cfg = load_config(config_path)
    if cfg.controls.backend != "simulated":
        raise click.ClickException("controls.backend is not \"simulated\": press the real button")
    sim_press(cfg.controls.simulated_socket, button)


@kit.command()
@click.argument("command", nargs=-1, required=True)
@config_option
def control(command: tuple[str, ...], config_path: Path) -> None:
    """Talk to the running daemon: `status`, `pending`, `correct FIELD VALUE` (prints its JSON answer)."""
    from tpskit.edge.control import control as send

    cfg = load_config(config_path)
    try:
        answer = send(cfg.daemon.control_socket, " ".join(command))
    except OSError as e:
        raise click.ClickException(f"no kit daemon at {cfg.daemon.control_socket}: {e}") from e
    click.echo(json.dumps(answer, indent=2))
    if isinstance(answer, dict) and "error" in answer:
        sys.exit(1)
