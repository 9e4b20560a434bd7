"""`tpskit kit selftest`: the technician's checklist, one line per check, pass or fail with the reason.

Non-interactive checks first (configuration, clock, key and certificate, revocation, disk, model and a
reference sheet, camera and focus, broker), then the ones that need the technician's hands: each button
when asked, and the lights and buzzer (cycled, then confirmed with the Confirm button). With simulated
controls the prompts are the same and a test (or a person) presses through the control socket.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpskit.edge.config import KitConfig
from tpskit.events import Event, log_event, register
from tpskit.progress import wait_visibly

log = logging.getLogger("tpskit.kit.selftest")
register(Event("kit.selftest", "info", "One technician self-test check: name, passed, detail."))

#: What the technician is asked; tests and scripts match these lines.
PROMPT_PRESS = "ACTION: press {button} now"
PROMPT_LIGHTS = "ACTION: watch the lights and the buzzer; if green, amber and red each lit and the buzzer sounded, " \
                "press CONFIRM (no press within {timeout:.0f} s = fail)"


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


Echo = Callable[[str], None]


def _daemon_running(cfg: KitConfig) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(cfg.daemon.control_socket))
        except OSError:
            return False
    return True


def sharpness(jpeg: bytes) -> tuple[float, tuple[int, int]]:
    """Variance of the Laplacian on a ~1000 px wide grey copy: a focused sheet of print has plenty of edges."""
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_4)
    if img is None:
        raise ValueError("the camera returned something that is not a JPEG")
    h, w = img.shape
    size = (w * 4, h * 4)
    if w > 1200:
        img = cv2.resize(img, (1000, int(h * 1000 / w)), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(img, cv2.CV_64F).var()), size


#: A photographed clean sheet with known values, shipped with the kit so that a freshly provisioned kit
#: passes its self-test with no extra file (see reference/reference-sheet.json for how it was made).
REFERENCE_PHOTO = Path(__file__).resolve().with_name("reference") / "reference-sheet.jpg"


def reference_sheet(cfg: KitConfig) -> tuple[bytes, dict[str, int], str]:
    """The reference photo (`[selftest] reference_photo`, else the shipped one), its values and its TPS.

    Its JSON twin (same name, `.json`) holds `values` (or is the values object itself) and, optionally, the
    `tps` printed on the sheet; a sheet without one is taken to be printed for this kit's TPS."""
    ref = cfg.selftest.reference_photo or REFERENCE_PHOTO
    meta = json.loads(ref.with_suffix(".json").read_text())
    values = meta.get("values", meta)
    return ref.read_bytes(), {k: int(v) for k, v in values.items()}, str(meta.get("tps", cfg.kit.tps))


# ------------------------------------------------------------------------------------------- the checks
def check_config(cfg: KitConfig) -> CheckResult:
    from tpskit.firmware.config import dev_flags_in_use

    bad = [f.key for f in dev_flags_in_use(cfg.dev) if not f.production_allowed]
    if bad:
        return CheckResult("configuration", False, f"development switches on: {', '.join(bad)} (never on a kit "
                                                   "sent to a polling station)")
    return CheckResult("configuration", True, f"kit {cfg.kit.id}, TPS {cfg.kit.tps}, camera {cfg.camera.backend}, "
                                              f"controls {cfg.controls.backend}")


def check_identity(cfg: KitConfig, now: dt.datetime) -> list[CheckResult]:
    from tpskit.edge.readiness import startup_problems

    problems = startup_problems(cfg, now)
    clock = [p for p in problems if p.key == "clock"]
    ident = [p for p in problems if p.key != "clock"]
    return [
        CheckResult("clock", not clock, clock[0].message if clock else f"{now:%Y-%m-%d %H:%M} UTC is plausible"),
        CheckResult("key and certificate", not ident,
                    "; ".join(f"{p.key}: {p.message}" for p in ident) if ident else
                    "key present (0600), matches the certificate, issued by the district CA, for this kit and TPS"),
    ]


def check_revocation(cfg: KitConfig, now: dt.datetime) -> CheckResult:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cfg.identity.certificate.read_bytes())
    except (OSError, ValueError) as e:
        return CheckResult("certificate valid, not revoked", False, f"cannot read the certificate: {e}")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return CheckResult("certificate valid, not revoked", False,
                           f"valid only {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}")
    valid = f"valid until {cert.not_valid_after_utc:%Y-%m-%d}"
    crl_path = cfg.selftest.crl
    if crl_path is None:
        return CheckResult("certificate valid, not revoked", True,
                           f"{valid}; no CRL on this kit (selftest.crl), the broker enforces revocation at connect")
    try:
        crl = x509.load_pem_x509_crl(crl_path.read_bytes())
        ca = x509.load_pem_x509_certificate(cfg.identity.ca.read_bytes())
    except (OSError, ValueError) as e:
        return CheckResult("certificate valid, not revoked", False, f"cannot read the CRL {crl_path}: {e}")
    if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        return CheckResult("certificate valid, not revoked", False, f"{crl_path} is not signed by the district CA")
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        return CheckResult("certificate valid, not revoked", False,
                           f"this kit's certificate (serial {cert.serial_number}) is REVOKED; call the district")
    return CheckResult("certificate valid, not revoked", True,
                       f"{valid}; not in the CRL of {crl.last_update_utc:%Y-%m-%d}")


def check_disk(cfg: KitConfig) -> CheckResult:
    folder = cfg.kit.data_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free_mb = shutil.disk_usage(folder).free // 2**20
    need = cfg.selftest.min_free_mb
    return CheckResult("free disk", free_mb >= need, f"{free_mb} MB free in {folder} (need {need} MB)")


def check_model(cfg: KitConfig) -> CheckResult:
    name = "model reads the reference sheet"
    try:
        from tpskit.edge.daemon import load_reader

        photo, truth, tps = reference_sheet(cfg)
        # The reference sheet is printed for its own TPS, and its values need not fit this TPS's register.
        reader = dataclasses.replace(load_reader(cfg), expected_tps=tps, registered_voters=None)
        result = reader.read(photo)
    except Exception as e:
        return CheckResult(name, False, f"{type(e).__name__}: {e}")
    if result.status != "ok":
        return CheckResult(name, False, f"status {result.status} ({result.reason or 'fields in review'}), expected ok")
    wrong = {k: (v, truth.get(k)) for k, v in result.values().items() if truth.get(k) != v}
    if wrong:
        return CheckResult(name, False, f"wrong values (read, true): {wrong}")
    ms = sum(result.timings_ms.values())
    return CheckResult(name, True, f"{reader.model_version}: all {len(truth)} fields right, ok, in {ms:.0f} ms")


def check_camera(cfg: KitConfig) -> CheckResult:
    from tpskit.firmware.camera import CameraError, make_camera

    name = "camera capture and focus"
    camera = make_camera(cfg.camera)
    try:
        t0 = time.monotonic()
        jpeg = camera.capture_jpeg()
        took = time.monotonic() - t0
        sharp, size = sharpness(jpeg)
    except CameraError as e:
        return CheckResult(name, False, f"{e.kind}: {e.message}")
    except Exception as e:
        return CheckResult(name, False, f"{type(e).__name__}: {e}")
    finally:
        camera.close()
    need = cfg.selftest.min_sharpness
    ok = sharp >= need
    return CheckResult(name, ok, f"{size[0]}x{size[1]} in {took:.1f} s, sharpness {sharp:.0f} (need {need:.0f})"
                       + ("" if ok else "; adjust camera.lens_position or the stand height, clean the lens"))


def check_broker(cfg: KitConfig) -> CheckResult:
    from tpskit.edge.transport import MqttLink, TlsIdentity

    name = "broker reachable with the kit certificate"
    where = f"{cfg.broker.host}:{cfg.broker.port}"
    try:
        link = MqttLink(f"{cfg.client_id}-selftest",
                        TlsIdentity(str(cfg.identity.ca), str(cfg.identity.certificate), str(cfg.identity.key)),
                        cfg.broker.model_copy(update={"session_expiry_s": 0}))
    except Exception as e:  # unreadable key/certificate
        return CheckResult(name, False, f"{type(e).__name__}: {e}")
    link.start()
    try:
        up = wait_visibly(f"connecting to the broker at {where}", cfg.selftest.broker_timeout_s,
                          link.wait_connected)
        error = link.last_error
    finally:
        link.stop()
    if up:
        return CheckResult(name, True, f"TLS + MQTT connect to {where} accepted")
    return CheckResult(name, False, error or f"no connection to {where} within {cfg.selftest.broker_timeout_s:.0f} s")


def check_buttons(controls: Any, echo: Echo, timeout: float) -> list[CheckResult]:
    from tpskit.firmware.controls import Button

    out = []
    for button in (Button.CAPTURE, Button.CONFIRM):
        _drain(controls)
        echo(PROMPT_PRESS.format(button=button.value.upper()))
        ev = wait_visibly(f"waiting for {button.value.upper()}", timeout, controls.wait_for_press)
        name = f"button {button.value}"
        if ev is None:
            out.append(CheckResult(name, False, f"no press within {timeout:.0f} s: check the wiring and the pin"))
        elif ev.button != button:
            out.append(CheckResult(name, False, f"got {ev.button.value} instead: the two buttons are swapped"))
        else:
            out.append(CheckResult(name, True, "pressed"))
    return out


def check_lights(controls: Any, echo: Echo, timeout: float) -> CheckResult:
    from tpskit.firmware.controls import Beep, Blink, Button, Signal

    controls.signal(Signal.SELFTEST)
    for leds in ((Blink.ON, Blink.OFF, Blink.OFF), (Blink.OFF, Blink.ON, Blink.OFF), (Blink.OFF, Blink.OFF, Blink.ON)):
        controls.set_leds(*leds)
        time.sleep(0.4)  # long enough for a person to see each light
    controls.set_leds(Blink.OFF, Blink.OFF, Blink.OFF)
    controls.beep(Beep.LONG)
    _drain(controls)
    echo(PROMPT_LIGHTS.format(timeout=timeout))
    ev = wait_visibly("waiting for CONFIRM", timeout, controls.wait_for_press)
    name = "lights and buzzer"
    if ev is None or ev.button != Button.CONFIRM:
        return CheckResult(name, False, "not confirmed by the technician")
    return CheckResult(name, True, "green, amber, red and buzzer confirmed by the technician")


def _drain(controls: Any) -> None:
    while controls.wait_for_press(0) is not None:
        pass


def run_selftest(cfg: KitConfig, echo: Echo | None = None, now: dt.datetime | None = None) -> list[CheckResult]:
    """Run every check in order, printing each line as it completes; returns all results."""
    say: Echo = echo or (lambda _line: None)
    results: list[CheckResult] = []

    def record(r: CheckResult) -> None:
        results.append(r)
        log_event(log, "kit.selftest", check=r.name, passed=r.passed, detail=r.detail)
        say(f"[{'PASS' if r.passed else 'FAIL'}] {r.name}: {r.detail}")

    if _daemon_running(cfg):
        record(CheckResult("kit daemon stopped", False, f"a kit daemon answers on {cfg.daemon.control_socket}; "
                                                        "stop it first: systemctl stop tpskit-kit"))
        return results
    now = now or dt.datetime.now(dt.UTC)
    record(check_config(cfg))
    for r in check_identity(cfg, now):
        record(r)
    record(check_revocation(cfg, now))
    record(check_disk(cfg))
    record(check_model(cfg))
    record(check_camera(cfg))
    record(check_broker(cfg))
    from tpskit.firmware.controls import make_controls

    try:
        controls = make_controls(cfg.controls)
    except Exception as e:
        record(CheckResult("buttons and lights", False, f"cannot set up the controls: {e}"))
        return results
    try:
        for r in check_buttons(controls, say, cfg.selftest.button_timeout_s):
            record(r)
        record(check_lights(controls, say, cfg.selftest.button_timeout_s))
    finally:
        controls.close()
    return results

