"""The national role's configuration: `national.toml`, strict like every role's (tpskit.config).

    [nats]
    servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"]

    [database]
    url = "postgresql+psycopg://national@db/national"

    [[districts]]
    id = "kab-bogor"
    ca = "districts/kab-bogor/ca.pem"
    tps_list = "districts/kab-bogor/tps.csv"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from tpskit.config import NatsServers, Section, load_config

DEFAULT_NATIONAL_CONFIG = Path("/etc/tpskit/national.toml")


class NatsSection(Section):
    servers: NatsServers = Field(min_length=1, max_length=16, description="every node of the NATS cluster "
                                                                       "(nats://host:port)")
    replicas: int = Field(default=3, ge=1, le=5, description="copies of the stream, when a worker creates it")
    durable: str = Field(default="national", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                         description="the durable pull consumer every worker shares")
    ack_wait_s: float = Field(default=30.0, ge=1, le=3600,
                              description="a message not acknowledged this long after delivery is delivered again "
                                          "(a worker killed mid-batch)")



class NationalDatabase(Section):
    url: str = Field(description="PostgreSQL: postgresql+psycopg://user:password@host:5432/dbname")

    @field_validator("url")
    @classmethod
    def _postgres(cls, v: str) -> str:
        if not v.startswith("postgresql"):
            raise ValueError("the national store is PostgreSQL (partitioned by province): postgresql+psycopg://...")
        return v


class WorkerSection(Section):
    batch_max: int = Field(default=200, ge=1, le=5000, description="messages fetched, verified and committed at once")


class DistrictTrust(Section):
    """One district the national tier takes results from: its CA (which issued its kits' certificates and its
    service's) and its TPS list (a district forwards results of its own TPS only)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$", description="the district id, as in its district.toml")
    ca: Path = Field(description="the district CA certificate")
    tps_list: Path = Field(description="the district's TPS list (tps,registered_voters[,village,kecamatan,regency])")
    revocations: Path | None = Field(default=None, description="the district's revoked.json, when published")


class NationalConfig(Section):
    nats: NatsSection = Field(description="the NATS JetStream cluster")
    database: NationalDatabase = Field(description="the national PostgreSQL")
    worker: WorkerSection = Field(default_factory=WorkerSection, description="worker tuning")
    districts: list[DistrictTrust] = Field(min_length=1, description="the districts whose results are taken")

    @model_validator(mode="after")
    def _unique(self) -> NationalConfig:
        ids = [d.id for d in self.districts]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"districts listed twice: {', '.join(twice)}")
        return self

    def relative_to(self, base: Path) -> dict[str, Any]:
        """Paths inside [[districts]] lie next to this file too (tpskit.config resolves sections, not lists)."""
        def resolve(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else (base / p).resolve()

        return {"districts": [d.model_copy(update={"ca": resolve(d.ca), "tps_list": resolve(d.tps_list),
                                                   "revocations": resolve(d.revocations)})
                              for d in self.districts]}


def load_national_config(path: Path) -> NationalConfig:
    return load_config(path, NationalConfig)
