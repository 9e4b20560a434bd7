"""`tpskit kit`: commands run on the kit. Each command is a small function; add new ones with
`@kit.command()` and `@config_option` (the config is loaded by `load_config`, which exits with the
config error's message, key path included)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from tpskit.config import DEFAULT_KIT_CONFIG, ConfigError, KitConfig, load_kit_config

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_KIT_CONFIG, show_default=True,
    envvar="TPSKIT_KIT_CONFIG", help="Kit configuration file.")


def load_config(path: Path) -> KitConfig:
    try:
        return load_kit_config(path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


@click.group()
def kit() -> None:
    """Run and maintain the kit (keygen, submit, deliver, receipts)."""


@kit.command()
@click.option("--kit-id", required=True, help="This kit's id (becomes the certificate CN and MQTT user).")
@click.option("--tps", required=True, help="13-digit TPS code the kit will serve.")
@click.option("--key", "key_path", type=click.Path(path_type=Path), default=Path("/var/lib/tpskit/kit.key"),
              show_default=True, help="Where the private key lives (created 0600, never overwritten).")
@click.option("--csr", "csr_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for kit.csr (default: next to the key).")
def keygen(kit_id: str, tps: str, key_path: Path, csr_dir: Path | None) -> None:
    """Create the kit's Ed25519 key and a certificate request naming the kit id and TPS."""
    from tpskit.keys import KeyFileError
    from tpskit.provisioning.district import keygen as make
    from tpskit.provisioning.pki import ProvisioningError

    try:
        key, csr = make(csr_dir or key_path.parent, kit_id, tps, key_path=key_path)
    except (ProvisioningError, KeyFileError) as e:
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
    from tpskit.edge.submit import SubmitError, sign_and_queue
    from tpskit.keys import KeyFileError

    _logging()
    cfg = load_config(config_path)
    data = json.loads(reading.read_text())
    try:
        row = sign_and_queue(cfg, data, photo.read_bytes())
    except (SubmitError, KeyFileError) as e:
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
    from tpskit.edge.outbox import Outbox

    cfg = load_config(config_path)
    with Outbox(cfg.outbox_path) as box:
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
