"""`tpskit provision`: technician commands at the district (CA, broker files, kit certificates)."""

from __future__ import annotations

from pathlib import Path

import click

from tpskit.layout import LayoutError
from tpskit.trust.identity import TrustError
from tpskit.trust.keys import KeyFileError


def _run(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return fn(*args, **kwargs)
    except (TrustError, LayoutError, KeyFileError) as e:  # ProvisioningError is a TrustError
        raise click.ClickException(str(e)) from e
    except OSError as e:  # e.g. the installed layout as a user who may not write it
        raise click.ClickException(f"cannot write {e.filename}: {e.strerror}. The installed district is written "
                                   "as root (sudo); --dir FOLDER keeps a district in a folder of yours") from e


@click.group()
def provision() -> None:
    """Technician tools: district CA, broker configuration, kit certificates, revocation."""


def _workspace(root: Path | None, system_root: Path | None) -> Path:
    """The district's CA workspace: --dir, or the installed one (under --root)."""
    from tpskit.layout import CA_WORKSPACE, SystemLayout

    if root is not None and system_root is not None:
        raise click.UsageError("give --dir (a district folder) or --root (an installed district), not both")
    return root if root is not None else SystemLayout(system_root or Path("/")).on_disk(CA_WORKSPACE)


dir_option = click.option(
    "--dir", "root", type=click.Path(path_type=Path), default=None,
    help="A district folder (demo, tests, bench rigs). Default: the installed district (/var/lib/tpskit-ca).")
root_option = click.option(
    "--root", "system_root", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="Install prefix (DESTDIR-style): files go under it and name each other by their installed paths. "
         "Default: /.")


@provision.command("district-init")
@dir_option
@root_option
@click.option("--tps-csv", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="Voter-registry export: tps,registered_voters[,village,kecamatan,regency].")
@click.option("--district-id", required=True, help="Short district id, e.g. kab-bogor.")
@click.option("--broker-host", default="127.0.0.1", show_default=True,
              help="Name or IP address the kits use to reach the broker (goes into its certificate).")
@click.option("--broker-port", type=int, default=8883, show_default=True)
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address the broker listens on.")
@click.option("--user", "service_user", default="tpskit", show_default=True,
              help="Installed district: the service's user (owns its key; reads /etc/tpskit).")
@click.option("--broker-user", default="mosquitto", show_default=True,
              help="Installed district: the broker's user (owns server.key; mosquitto drops to it).")
@click.option("--run-as", default=None, help="District folder: mosquitto's `user` option.")
def district_init_cmd(root: Path | None, system_root: Path | None, tps_csv: Path, district_id: str, broker_host: str,
                      broker_port: int, bind: str, service_user: str, broker_user: str, run_as: str | None) -> None:
    """Create the district CA, the broker's certificate and configuration, and the service's identity and
    configuration: installed (FHS: /etc/tpskit, /etc/mosquitto/tpskit, /var/lib/tpskit-ca; run as root so
    that owners are set), or in a district folder with --dir."""
    from tpskit.layout import Owner
    from tpskit.provisioning.district import district_init

    if root is not None and system_root is not None:
        raise click.UsageError("give --dir (a district folder) or --root (an installed district), not both")
    d = _run(district_init, root, tps_csv, district_id=district_id, broker_host=broker_host,
             broker_port=broker_port, bind=bind, run_as=run_as,
             system_root=(system_root or Path("/")) if root is None else None,
             owner=Owner(service_user, broker_user))
    n = len(d.tps())
    click.echo(f"district {district_id}: CA {d.ca_cert_path}, {n} TPS")
    if root is None:
        import os

        if os.geteuid() != 0:
            click.echo("not run as root: the files are yours; as root they would belong to "
                       f"{service_user} (service key) and {broker_user} (broker key)", err=True)
        click.echo("broker:  the systemd drop-in systemd/tpskit-district-broker.conf starts Debian's mosquitto "
                   "with /etc/mosquitto/tpskit/mosquitto.conf")
        click.echo("service: systemd/tpskit-district.service "
                   "(tpskit district serve --config /etc/tpskit/district.toml)")
    else:
        click.echo(f"broker:  mosquitto -c {d.broker_dir / 'mosquitto.conf'}")
        click.echo(f"service: tpskit district serve --config {d.config_path}")


@provision.command("sign-csr")
@click.argument("csr", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False))
@dir_option
@root_option
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write kit.pem, ca.pem and kit.toml of the one kit (default: the workspace's "
                   "kits/KIT-ID).")
@click.option("--replace", is_flag=True, help="Issue a new certificate to a kit id that already has one.")
def sign_csr_cmd(csr: tuple[Path, ...], root: Path | None, system_root: Path | None, out_dir: Path | None,
                 replace: bool) -> None:
    """Issue kit certificates (TPS inside) and each kit's settings from the kits' CSRs.

    Give many CSRs at once to provision a batch: every one is checked before any certificate is issued, and
    the district's lists and the broker are updated once."""
    from tpskit.provisioning.district import sign_csrs

    kits = _run(sign_csrs, _workspace(root, system_root), list(csr), out_dir=out_dir, replace=replace)
    for k in kits:
        click.echo(f"kit {k.kit_id} for TPS {k.tps}: copy {k.folder}/kit.pem, ca.pem and kit.toml to the kit's "
                   "/etc/tpskit/")
    click.echo(f"broker: {kits[0].broker}")


@provision.command("revoke")
@click.argument("kit_id")
@dir_option
@root_option
@click.option("--reason", default="unspecified", show_default=True)
def revoke_cmd(kit_id: str, root: Path | None, system_root: Path | None, reason: str) -> None:
    """Revoke a kit: the district service refuses its results and the broker disconnects it, at once."""
    from tpskit.provisioning.district import revoke

    e = _run(revoke, _workspace(root, system_root), kit_id, reason)
    click.echo(f"revoked {kit_id} (serial {e['serial']}, TPS {e['tps']}): the district service refuses its "
               "results from now on")
    click.echo(f"broker: {e['broker']}")


@provision.command("broker-sync")
@dir_option
@root_option
def broker_sync_cmd(root: Path | None, system_root: Path | None) -> None:
    """Make the running broker's users match kits.json, revoked.json and the service identities (after a
    change made while the broker could not be reached). Never reloads the broker."""
    from tpskit.provisioning.district import broker_sync

    click.echo(f"broker: {_run(broker_sync, _workspace(root, system_root))}")


@provision.command("service-shares")
@dir_option
@root_option
@click.option("--processes", type=click.IntRange(2, 32), required=True,
              help="The `[ingest] processes` value: one broker identity is issued per service process.")
def service_shares_cmd(root: Path | None, system_root: Path | None, processes: int) -> None:
    """Issue the district service's per-process certificates for `[ingest] processes = N` (the broker
    gives every certificate exactly one session)."""
    from tpskit.provisioning.district import service_shares

    for path in _run(service_shares, _workspace(root, system_root), processes):
        click.echo(f"issued {path}")


@provision.command("broker-add")
@dir_option
@root_option
@click.option("--host", required=True, help="The new broker's name (or address), as kits and services reach it.")
@click.option("--port", type=click.IntRange(1, 65535), default=8883, show_default=True)
def broker_add_cmd(root: Path | None, system_root: Path | None, host: str, port: int) -> None:
    """Add another broker to the district (docs/failover.md): its files to install on its machine; kits
    issued from now on fail over to it, and every change is applied to it too."""
    from tpskit.provisioning.district import broker_add

    folder = _run(broker_add, _workspace(root, system_root), host, port)
    click.echo(f"broker {host}:{port}: install the files of {folder} on its machine; district.toml lists it "
               "([broker] failover); kits issued before need that line in their kit.toml")


@provision.command("service-instance")
@dir_option
@root_option
@click.option("--name", required=True, help="A short name for the instance, e.g. 'b' (lower-case, digits, '-').")
def service_instance_cmd(root: Path | None, system_root: Path | None, name: str) -> None:
    """Issue another district service instance's certificate and key (a second machine ingesting into the
    same database, docs/failover.md); set them as its [identity] certificate and key."""
    from tpskit.provisioning.district import service_instance

    cert, key = _run(service_instance, _workspace(root, system_root), name)
    click.echo(f"issued {cert}\nissued {key}\nset them as [identity] certificate and key in the district.toml "
               f"of instance {name}")


@provision.command("bench-kit")
@dir_option
@root_option
@click.option("--kit-id", required=True)
@click.option("--tps", required=True)
@click.option("--kit-dir", type=click.Path(path_type=Path), required=True, help="Folder for the kit's files.")
def bench_kit_cmd(root: Path | None, system_root: Path | None, kit_id: str, tps: str, kit_dir: Path) -> None:
    """Test rigs only: keygen + sign-csr in one step (the same CSR path), all files in KIT_DIR."""
    from tpskit.provisioning.district import bench_kit

    k = _run(bench_kit, _workspace(root, system_root), kit_id, tps, kit_dir)
    click.echo(f"kit {k.kit_id} for TPS {k.tps}: tpskit kit deliver --config {k.folder / 'kit.toml'}")
