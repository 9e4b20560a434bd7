"""The kit's configuration: `/etc/tpskit/kit.toml` (written by `tpskit provision sign-csr`, copied to the kit).

Built on the strict base of `tpskit.config`; the hardware tables (`[camera]`, `[controls]`, `[dev]`) are
the firmware's models, and the rule that refuses simulated hardware on a provisioned kit is the
firmware's too (`check_hardware_policy`), applied here at load time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from tpskit.config import BrokerSection, ConfigError, Section, load_config
from tpskit.firmware.config import (
    CameraConfig,
    ControlsConfig,
    DevConfig,
    HardwarePolicyError,
    check_hardware_policy,
)
from tpskit.forms import valid_tps
from tpskit.trust.identity import KIT_ID_RE

DEFAULT_KIT_CONFIG = Path("/etc/tpskit/kit.toml")


class KitSection(Section):
    id: str = Field(description="kit id, as in the kit certificate's CN (e.g. 'kit-3201012001001-a')",
                    pattern=KIT_ID_RE.pattern)
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


class ScreenSection(Section):
    """`[screen]`: the officer's review page, served by the kit daemon to the kiosk browser on the touch display."""

    enabled: bool = Field(default=True, description="serve the review page (the kiosk's Chromium shows it)")
    host: str = Field(default="127.0.0.1",
                      description="address the page listens on: loopback only (127.0.0.1, ::1 or localhost); the "
                                  "page can correct and confirm a result, so nothing off the kit may reach it")
    port: int = Field(default=8470, ge=0, le=65535,
                      description="TCP port of the page (0: any free port, for tests); the kiosk unit opens "
                                  "http://127.0.0.1:8470/")

    @field_validator("host")
    @classmethod
    def _loopback(cls, v: str) -> str:
        if v not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the review page binds to loopback only: 127.0.0.1, ::1 or localhost")
        return v


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
    screen: ScreenSection = Field(default_factory=ScreenSection, description="the officer's review page")

    @property
    def outbox_path(self) -> Path:
        return self.kit.data_dir / "outbox.sqlite"

    @property
    def client_id(self) -> str:
        return self.broker.client_id or self.kit.id


def load_kit_config(path: Path) -> KitConfig:
    cfg = load_config(path, KitConfig)
    # Simulated hardware is refused on a provisioned kit (one holding its key and certificate).
    provisioned = cfg.identity.key.exists() and cfg.identity.certificate.exists()
    try:
        check_hardware_policy(cfg.camera, cfg.controls, cfg.dev, provisioned=provisioned)
    except HardwarePolicyError as e:
        raise ConfigError(f"{path}: invalid configuration\n  {e.key}: {e.message}") from e
    return cfg
