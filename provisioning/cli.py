"""`tpskit provision`: technician commands at the district (CA, broker files, kit certificates)."""

from __future__ import annotations

from pathlib import Path

import click

from tpskit.keys import KeyFileError
from tpskit.provisioning.pki import ProvisioningError


def _run(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return fn(*args, **kwargs)
    except (ProvisioningError, KeyFileError) as e:
        raise click.ClickException(str(e)) from e


@click.group()
def provision() -> None:
    """Technician tools: district CA, broker configuration, kit certificates, revocation."""


@provision.command("district-init")
@click.option("--dir", "root", type=click.Path(path_type=Path), required=True, help="New district folder.")
@click.option("--tps-csv", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="Voter-registry export: tps,registered_voters[,village,kecamatan,regency].")
@click.option("--district-id", required=True, help="Short district id, e.g. kab-bogor.")
@click.option("--broker-host", default="127.0.0.1", show_default=True,
              help="Name or IP address the kits use to reach the broker (goes into its certificate).")
@click.option("--broker-port", type=int, default=8883, show_default=True)
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address the broker listens on.")
@click.option("--run-as", default=None, help="mosquitto's `user` option (Debian's service runs as mosquitto).")
def district_init_cmd(root: Path, tps_csv: Path, district_id: str, broker_host: str, broker_port: int,
                      bind: str, run_as: str | None) -> None:
    """Create the district CA, broker certificate and configuration, and the service's identity."""
    from tpskit.provisioning.district import district_init

    d = _run(district_init, root, tps_csv, district_id=district_id, broker_host=broker_host,
             broker_port=broker_port, bind=bind, run_as=run_as)
    n = len(d.tps())
    click.echo(f"district {district_id}: CA {d.ca_cert_path}, {n} TPS")
    click.echo(f"broker:  mosquitto -c {d.broker_dir / 'mosquitto.conf'}")
    click.echo(f"service: tpskit district serve --config {d.config_path}")


@provision.command("sign-csr")
@click.argument("csr", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--dir", "root", type=click.Path(path_type=Path), required=True, help="The district folder.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write kit.pem, ca.pem and kit.toml (default DIR/kits/KIT-ID).")
@click.option("--replace", is_flag=True, help="Issue a new certificate to a kit id that already has one.")
def sign_csr_cmd(csr: Path, root: Path, out_dir: Path | None, replace: bool) -> None:
    """Issue a kit certificate (TPS inside) and the kit's settings from the kit's CSR."""
    from tpskit.provisioning.district import sign_csr

    k = _run(sign_csr, root, csr, out_dir=out_dir, replace=replace)
    click.echo(f"kit {k.kit_id} for TPS {k.tps}: copy {k.folder}/kit.pem and ca.pem to /etc/tpskit/ and "
               f"kit.toml to /etc/tpskit/kit.toml on the kit")
    click.echo(f"broker: {k.broker}")


@provision.command("revoke")
@click.argument("kit_id")
@click.option("--dir", "root", type=click.Path(path_type=Path), required=True, help="The district folder.")
@click.option("--reason", default="unspecified", show_default=True)
def revoke_cmd(kit_id: str, root: Path, reason: str) -> None:
    """Revoke a kit: the district service refuses its results and the broker disconnects it, at once."""
    from tpskit.provisioning.district import revoke

    e = _run(revoke, root, kit_id, reason)
    click.echo(f"revoked {kit_id} (serial {e['serial']}, TPS {e['tps']}): the district service refuses its "
               "results from now on")
    click.echo(f"broker: {e['broker']}")


@provision.command("broker-sync")
@click.option("--dir", "root", type=click.Path(path_type=Path), required=True, help="The district folder.")
def broker_sync_cmd(root: Path) -> None:
    """Make the running broker's users match kits.json, revoked.json and the service identities (after a
    change made while the broker could not be reached). Never reloads the broker."""
    from tpskit.provisioning.district import broker_sync

    click.echo(f"broker: {_run(broker_sync, root)}")


@provision.command("service-shares")
@click.option("--dir", "root", type=click.Path(path_type=Path), required=True, help="The district folder.")
@click.option("--processes", type=click.IntRange(2, 32), required=True,
              help="The `[ingest] processes` value: one broker identity is issued per service process.")
def service_shares_cmd(root: Path, processes: int) -> None:
    """Issue the district service's per-process certificates for `[ingest] processes = N` (the broker
    gives every certificate exactly one session)."""
    from tpskit.provisioning.district import service_shares

    for path in _run(service_shares, root, processes):
        click.echo(f"issued {path}")


@provision.command("bench-kit")
@click.option("--dir", "root", type=click.Path(path_type=Path), required=True, help="The district folder.")
@click.option("--kit-id", required=True)
@click.option("--tps", required=True)
@click.option("--kit-dir", type=click.Path(path_type=Path), required=True, help="Folder for the kit's files.")
def bench_kit_cmd(root: Path, kit_id: str, tps: str, kit_dir: Path) -> None:
    """Test rigs only: keygen + sign-csr in one step (the same CSR path), all files in KIT_DIR."""
    from tpskit.provisioning.district import bench_kit

    k = _run(bench_kit, root, kit_id, tps, kit_dir)
    click.echo(f"kit {k.kit_id} for TPS {k.tps}: tpskit kit deliver --config {k.folder / 'kit.toml'}")
