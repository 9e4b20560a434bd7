"""Typed configuration for the two roles, read from TOML.

- the KIT: `/etc/tpskit/kit.toml` (written by `tpskit provision sign-csr`, copied to the kit);
- the DISTRICT service: `district.toml` (written by `tpskit provision district-init`).

Every section is its own strict model (unknown keys are refused, a misspelt key is a loud error), every
field says what it is, and relative paths are resolved against the folder of the config file. A bad file
becomes one `ConfigError` naming the key path, the value found and what is expected. Sections other roles
add later (`[camera]`, `[controls]` on the kit) are new optional fields on `KitConfig`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tpskit.firmware.config import (
    CameraConfig,
    ControlsConfig,
    DevConfig,
    HardwarePolicyError,
    check_hardware_policy,
)
from tpskit.forms import valid_tps

DEFAULT_KIT_CONFIG = Path("/etc/tpskit/kit.toml")
DEFAULT_DISTRICT_CONFIG = Path("/etc/tpskit/district.toml")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the key, the value and the fix."""


class Section(BaseModel):
    """Base of every section: unknown keys are refused, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------- kit
class KitSection(Section):
    id: str = Field(description="kit id, as in the kit certificate's CN (e.g. 'kit-3201012001001-a')",
                    pattern=r"^[a-z0-9][a-z0-9._-]{2,62}$")
    tps: str = Field(description="13-digit TPS code this kit serves (10-digit village code + 3-digit TPS number)")
    registered_voters: int | None = Field(default=None, ge=0, le=1000,
                                          description="registered voters of this TPS (from the district's list)")
    data_dir: Path = Field(default=Path("/var/lib/tpskit"),
                           description="folder for the outbox and receipts (must survive reboots)")

    @field_validator("tps")
    @classmethod
    def _tps(cls, v: str) -> str:
        if not valid_tps(v):
            raise ValueError("a TPS code is 13 digits, e.g. 3201012001001")
        return v


class KitIdentity(Section):
    key: Path = Field(default=Path("/var/lib/tpskit/kit.key"),
                      description="the kit's Ed25519 private key (mode 0600, made by `tpskit kit keygen`)")
    certificate: Path = Field(default=Path("/etc/tpskit/kit.pem"),
                              description="the kit certificate issued by `tpskit provision sign-csr`")
    ca: Path = Field(default=Path("/etc/tpskit/ca.pem"), description="the district CA certificate")


class BrokerSection(Section):
    host: str = Field(default="127.0.0.1", description="district broker host name or IP address")
    port: int = Field(default=8883, ge=1, le=65535, description="district broker TLS port")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive in seconds")
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0,
                                  description="how long the broker keeps our session (queued acks) while offline")
    client_id: str | None = Field(default=None, description="MQTT client id asked for; the kit id / service id when "
                                                           "unset. A tpskit district broker replaces it with the "
                                                           "certificate's subject (one session per certificate)")


class DeliverySection(Section):
    ack_timeout_s: float = Field(default=60.0, gt=0,
                                 description="republish a result when no signed ack arrived within this time")
    publish_timeout_s: float = Field(default=15.0, gt=0, description="wait this long for the broker's PUBACK")
    retry_initial_s: float = Field(default=2.0, gt=0, description="first retry delay after a failure")
    retry_max_s: float = Field(default=120.0, gt=0, description="longest retry delay (exponential backoff cap)")

    @model_validator(mode="after")
    def _order(self) -> DeliverySection:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be at least retry_initial_s")
        return self


class DaemonSection(Section):
    """`[daemon]`: how `tpskit kit run` behaves (the kit runtime's own settings)."""

    auto_send_ok: bool = Field(default=False,
                               description="send a sheet read all-ok without waiting for the Confirm press "
                                           "(a sheet in review always waits)")
    control_socket: Path = Field(default=Path("/run/tpskit/kit.sock"),
                                 description="local Unix socket of the daemon: `status`, `pending`, "
                                             "`correct FIELD VALUE` (for a screen or touch page)")
    max_failures: int = Field(default=3, ge=1, le=100,
                              description="internal failures (camera, reader, signing) within failure_window_s "
                                          "after which the kit stops on the red light")
    failure_window_s: float = Field(default=600.0, gt=0, description="window for max_failures, in seconds")
    job_timeout_s: float = Field(default=90.0, gt=0,
                                 description="a capture+read+sign job running longer than this is stuck: the "
                                             "systemd watchdog is no longer fed and restarts the daemon")
    offline_after_s: float = Field(default=5.0, ge=0,
                                   description="show the offline light when results wait and the broker has "
                                               "been unreachable this long")


class SelftestSection(Section):
    """`[selftest]`: the technician's checklist (`tpskit kit selftest`)."""

    reference_photo: Path | None = Field(default=None,
                                         description="a photo of a filled reference sheet with a JSON file of its "
                                                     "values (and its tps) next to it (same name, .json); the "
                                                     "reference sheet shipped with the kit when unset")
    crl: Path | None = Field(default=None, description="the district's revocation list (crl.pem), when the kit "
                                                       "was given one")
    min_free_mb: int = Field(default=500, ge=1, description="free space needed in the data folder, in MB")
    min_sharpness: float = Field(default=100.0, ge=0,
                                 description="variance of the Laplacian a focused capture reaches at least")
    button_timeout_s: float = Field(default=30.0, gt=0, description="how long to wait for each asked press")
    broker_timeout_s: float = Field(default=8.0, gt=0, description="TLS + MQTT connect timeout")


class KitConfig(Section):
    kit: KitSection = Field(description="who this kit is and where it keeps its data")
    identity: KitIdentity = Field(default_factory=KitIdentity, description="key and certificates")
    broker: BrokerSection = Field(default_factory=BrokerSection, description="the district broker")
    delivery: DeliverySection = Field(default_factory=DeliverySection, description="retries and timeouts")
    # Kit runtime sections (tpskit kit run / selftest); hardware tables are the firmware's models.
    camera: CameraConfig = Field(default_factory=CameraConfig, description="the camera ([camera])")
    controls: ControlsConfig = Field(default_factory=ControlsConfig, description="buttons, lights, buzzer")
    dev: DevConfig = Field(default_factory=DevConfig, description="development switches (never in production)")
    daemon: DaemonSection = Field(default_factory=DaemonSection, description="the kit daemon")
    selftest: SelftestSection = Field(default_factory=SelftestSection, description="the technician self-test")

    @property
    def outbox_path(self) -> Path:
        return self.kit.data_dir / "outbox.sqlite"

    @property
    def client_id(self) -> str:
        return self.broker.client_id or self.kit.id


# ---------------------------------------------------------------------------------------- district
class DistrictSection(Section):
    id: str = Field(description="district id, short, used in acks and the service's certificate (e.g. 'kab-bogor')",
                    pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$")
    tps_list: Path = Field(default=Path("tps.csv"),
                           description="CSV of the district's TPS: tps,registered_voters[,village,kecamatan,regency]")
    revocations: Path = Field(default=Path("revoked.json"),
                              description="revocation list written by `tpskit provision revoke`")
    templates_dir: Path | None = Field(default=None, description="form templates; the built-in ones when unset")


class DistrictIdentity(Section):
    key: Path = Field(default=Path("service/district.key"), description="the district service's Ed25519 key")
    certificate: Path = Field(default=Path("service/district.pem"),
                              description="the district service certificate (signs acks, authenticates to the broker)")
    ca: Path = Field(default=Path("ca.pem"), description="the district CA certificate")


class DatabaseSection(Section):
    url: str = Field(default="sqlite:///district.sqlite",
                     description="SQLAlchemy URL: sqlite:///FILE (relative to this file) or "
                                 "postgresql+psycopg://user:pass@host/db")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or v.startswith("postgresql")):
            raise ValueError("use sqlite:///FILE or postgresql+psycopg://user:password@host:5432/dbname")
        return v


class IngestSection(Section):
    batch_max: int = Field(default=500, ge=1, le=10_000,
                           description="messages verified and committed per database transaction at most")
    verify_processes: int = Field(default=0, ge=0, le=32,
                                  description="helper processes verifying signatures and re-checking results in "
                                              "parallel (0: in the service process)")
    processes: int = Field(default=1, ge=1, le=32,
                           description="service processes, each subscribed to its share of the TPS list (by TPS "
                                       "code, so one kit's results stay in one process, in order); more than 1 "
                                       "uses more cores")


class LimitsSection(Section):
    """`[limits]`: what one TPS's kits may make the district store, and the disk the district keeps free.

    Quotas count per TPS (the broker lets only a TPS's own kits publish on its topics) and per clock hour.
    A message over a quota is not stored, not answered (the kit publishes it again later) and logged."""

    evidence_max_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024, le=16 * 1024 * 1024,
                                    description="largest evidence photo accepted, in bytes (a result announcing "
                                                "a larger one is refused at once)")
    submissions_per_tps_hour: int = Field(default=120, ge=1, le=100_000,
                                          description="new submissions (results not seen before) one TPS may send "
                                                      "per hour")
    bytes_per_tps_hour: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024,
                                    description="bytes of new results and photos one TPS may have stored per hour")
    refusals_logged_per_tps_hour: int = Field(default=100, ge=1,
                                              description="refused messages of one TPS recorded one by one per hour; "
                                                          "beyond, they are counted and summarised")
    min_free_mb: int = Field(default=2048, ge=0,
                             description="disk floor: below this much free space the district stops storing photos "
                                         "(results are still verified, stored and acknowledged) and says so")
    disk_path: Path | None = Field(default=None,
                                   description="where to measure free space; the SQLite file's folder by default, "
                                               "this file's folder for PostgreSQL")


class DistrictBroker(BrokerSection):
    client_id: str | None = Field(default="tpskit-district",
                                  description="MQTT client id the service asks for; a tpskit district broker gives "
                                              "each certificate its subject as client id (its persistent session)")
    receive_maximum: int = Field(default=1000, ge=1, le=65535,
                                 description="unacknowledged messages the broker may send us at once")


class DistrictConfig(Section):
    district: DistrictSection = Field(description="the district and its TPS list")
    identity: DistrictIdentity = Field(default_factory=DistrictIdentity, description="service key and certificates")
    broker: DistrictBroker = Field(default_factory=DistrictBroker, description="the district broker")
    database: DatabaseSection = Field(default_factory=DatabaseSection, description="where results are stored")
    ingest: IngestSection = Field(default_factory=IngestSection, description="ingest tuning")
    limits: LimitsSection = Field(default_factory=LimitsSection, description="quotas and the disk floor")

    @property
    def disk_path(self) -> Path:
        """Where the district's free space is measured for the disk floor."""
        if self.limits.disk_path is not None:
            return self.limits.disk_path
        if self.database.url.startswith("sqlite:///"):
            return Path(self.database.url[len("sqlite:///"):]).parent
        return self.district.tps_list.parent


# ------------------------------------------------------------------------------------------ loading
M = TypeVar("M", bound=BaseModel)


def _resolve_paths(model: M, base: Path) -> M:
    """Relative paths in the file mean 'next to this config file'."""
    update: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            update[name] = (base / value).resolve()
        elif isinstance(value, BaseModel):
            update[name] = _resolve_paths(value, base)
    if isinstance(model, DatabaseSection) and model.url.startswith("sqlite:///"):
        file = Path(model.url[len("sqlite:///"):])
        if not file.is_absolute():
            update["url"] = f"sqlite:///{(base / file).resolve()}"
    return model.model_copy(update=update) if update else model


def _describe(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The description of the field at `loc`, to tell the reader what is expected."""
    current: Any = model
    desc = None
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            break
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        desc = info.description
        current = info.annotation
    return desc


def _format_error(path: Path, model: type[BaseModel], e: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in e.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; remove it or check its spelling")
            continue
        if err["type"] == "missing":
            hint = _describe(model, loc)
            lines.append(f"  {key}: missing; add it" + (f" ({hint})" if hint else ""))
            continue
        value = err.get("input")
        hint = _describe(model, loc)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {key} = {value!r}: {msg}" + (f"; expected {hint}" if hint else ""))
    return "\n".join(lines)


def _load(path: Path, model: type[M]) -> M:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; give --config PATH or create it") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:  # found by tests/fuzz: it escaped as a traceback
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    try:
        cfg = model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(path, model, e)) from e
    return _resolve_paths(cfg, path.parent.resolve())


def load_kit_config(path: Path) -> KitConfig:
    cfg = _load(path, KitConfig)
    # Simulated hardware is refused on a provisioned kit (one holding its key and certificate).
    provisioned = cfg.identity.key.exists() and cfg.identity.certificate.exists()
    try:
        check_hardware_policy(cfg.camera, cfg.controls, cfg.dev, provisioned=provisioned)
    except HardwarePolicyError as e:
        raise ConfigError(f"{path}: invalid configuration\n  {e.key}: {e.message}") from e
    return cfg


def load_district_config(path: Path) -> DistrictConfig:
    return _load(path, DistrictConfig)


def toml_dumps(data: dict[str, dict[str, Any]], header: str = "") -> str:
    """A small TOML writer for the flat two-level files we generate (tomllib only reads)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        s = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'

    out = [header.rstrip() + "\n"] if header else []
    for section, items in data.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {value(v)}" for k, v in items.items() if v is not None)
        out.append("")
    return "\n".join(out)
