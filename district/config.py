"""The district service's configuration: `district.toml` (written by `tpskit provision district-init`).

Built on the strict base of `tpskit.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from tpskit.config import BrokerSection, NatsServers, Section, load_config

DEFAULT_DISTRICT_CONFIG = Path("/etc/tpskit/district.toml")


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

    def relative_to(self, base: Path) -> dict[str, Any]:
        """A SQLite file named relative to district.toml lies next to it."""
        if self.url.startswith("sqlite:///"):
            file = Path(self.url[len("sqlite:///"):])
            if not file.is_absolute():
                return {"url": f"sqlite:///{(base / file).resolve()}"}
        return {}


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
    lean: bool = Field(default=False,
                       description="read MQTT with the lean reader (tpskit.district.transport._LeanClient: paho "
                                   "internals, paho-mqtt 2.2 only, refused at start-up on another release) "
                                   "instead of paho's public API")


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


class DashboardSection(Section):
    """`[dashboard]`: the read-only operations page the service serves (tpskit.district.dashboard)."""

    enabled: bool = Field(default=True, description="serve the dashboard from `tpskit district serve`")
    bind: str = Field(default="127.0.0.1", description="address to listen on; loopback by default: expose it "
                                                       "through a reverse proxy with authentication (README)")
    port: int = Field(default=8480, ge=0, le=65535, description="TCP port (0: any free port, said in the log)")
    poll_s: float = Field(default=0.25, ge=0.05, le=10, description="how often the database is checked for new "
                                                                      "results and refusals (live updates)")
    reread_timeout_s: float = Field(default=120, ge=5, le=3600,
                                    description="longest the reader may take to reread an evidence photo")
    cache_dir: Path | None = Field(default=None, description="where reread photos are kept (rectified sheet, "
                                                             "reading); `reread-cache` next to the database "
                                                             "file (SQLite) or this file by default")


class DistrictBroker(BrokerSection):
    client_id: str | None = Field(default="tpskit-district",
                                  description="MQTT client id the service asks for; a tpskit district broker gives "
                                              "each certificate its subject as client id (its persistent session)")
    receive_maximum: int = Field(default=1000, ge=1, le=65535,
                                 description="unacknowledged messages the broker may send us at once")


class NationalSection(Section):
    """`[national]`: forward every accepted result to the national tier's NATS JetStream stream (off by default).

    Accepted results are written to a forward-outbox in the same transaction that stores them, and sent in
    order, each marked once JetStream acknowledged it: a district cut off from NATS forwards its backlog
    when it is back."""

    enabled: bool = Field(default=False, description="forward accepted results to the national stream")
    servers: NatsServers = Field(default_factory=list, min_length=0, max_length=16,
                               description="the NATS cluster's nodes, every one (nats://host:port)")
    replicas: int = Field(default=3, ge=1, le=5, description="copies of the stream, when this district creates it")
    batch_max: int = Field(default=500, ge=1, le=10_000, description="outbox rows read and sent per round at most")
    retry_s: float = Field(default=1.0, gt=0, le=60, description="wait before trying NATS again after a failure")
    lease_s: float = Field(default=10.0, ge=1, le=600, description="how long the instance that forwards holds the "
                           "district's forward lease without renewing it; when it lapses (that instance died) "
                           "another instance takes over")



class DistrictConfig(Section):
    district: DistrictSection = Field(description="the district and its TPS list")
    identity: DistrictIdentity = Field(default_factory=DistrictIdentity, description="service key and certificates")
    broker: DistrictBroker = Field(default_factory=DistrictBroker, description="the district broker")
    database: DatabaseSection = Field(default_factory=DatabaseSection, description="where results are stored")
    ingest: IngestSection = Field(default_factory=IngestSection, description="ingest tuning")
    limits: LimitsSection = Field(default_factory=LimitsSection, description="quotas and the disk floor")
    national: NationalSection = Field(default_factory=NationalSection,
                                      description="forwarding to the national tier (off by default)")
    dashboard: DashboardSection = Field(default_factory=DashboardSection, description="the operations dashboard")

    @model_validator(mode="after")
    def _national_servers(self) -> DistrictConfig:
        if self.national.enabled and not self.national.servers:
            raise ValueError("[national] enabled = true needs servers = [\"nats://host:port\", ...]")
        return self

    @property
    def reread_cache(self) -> Path:
        if self.dashboard.cache_dir is not None:
            return self.dashboard.cache_dir
        if self.database.url.startswith("sqlite:///"):
            return Path(self.database.url[len("sqlite:///"):]).parent / "reread-cache"
        return self.district.tps_list.parent / "reread-cache"

    @property
    def disk_path(self) -> Path:
        """Where the district's free space is measured for the disk floor."""
        if self.limits.disk_path is not None:
            return self.limits.disk_path
        if self.database.url.startswith("sqlite:///"):
            return Path(self.database.url[len("sqlite:///"):]).parent
        return self.district.tps_list.parent


def load_district_config(path: Path) -> DistrictConfig:
    return load_config(path, DistrictConfig)
