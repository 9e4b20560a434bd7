"""The `tpskit` command. Sub-commands live with their role and are imported only when used, so that
`tpskit read` never pays for the MQTT, database or crypto stacks (and a kit never imports TensorFlow)."""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group. One explicit table, no plug-in magic.
COMMANDS: dict[str, tuple[str, str]] = {
    "read": ("tpskit.edge.read_cli:read", "Read photographed tally sheets and print the values."),
    "form": ("tpskit.sheets.cli:form", "Render printable blank forms and filled test sheets."),
    "kit": ("tpskit.edge.kit_cli:kit", "Run and maintain the kit (keygen, run, selftest, check-config)."),
    "provision": ("tpskit.provisioning.cli:provision", "Technician tools: district CA, kit certificates."),
    "district": ("tpskit.district.cli:district", "District service: serve, status, tally, refusals, export."),
    "national": ("tpskit.national.cli:national", "National tier: workers (verify again, store by province), tally."),
    "verify": ("tpskit.district.verify_cli:verify", "Re-verify exported signed results against a CA."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, _ = COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and module_name.startswith(e.name):
                raise click.ClickException(f"'{cmd_name}' is not available in this build") from e
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup)
@click.version_option(package_name="tpskit")
def cli() -> None:
    """tpskit: polling-station result kits."""


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (tests call it directly)."""
    try:
        rv = cli.main(args=argv, prog_name="tpskit", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.UsageError as e:
        # One line, no usage block: scripts and people read the reason; --help is there for the rest.
        where = e.ctx.command_path if e.ctx is not None else "tpskit"
        click.echo(f"{where}: {e.format_message()} (see {where} --help)", err=True)
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except SystemExit as e:
        return int(e.code or 0)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
