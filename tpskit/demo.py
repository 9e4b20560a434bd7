"""`make demo`: the whole journey on this machine, with generated sheets and simulated hardware.

1. Reader: photographs of filled C.Hasil sheets (both templates, several capture severities, and bad
   captures) read by the int8 model, with the officer's message for every refusal.
2. Trust chain: a district and three kits provisioned; each kit signs its reading and delivers it over
   mutual-TLS MQTT to a real mosquitto; the district verifies, stores, acknowledges and tabulates.
3. Kit daemon: one kit driven by simulated button presses, from capture to the district's receipt.
4. Pages: screenshots of the district's dashboard (dashboard*.png) and of the kit's review screen, served by
   the kit daemon of part 3 (kit*.png), into demo-run/, taken by a headless Chromium; with DEMO_SERVE=1, the
   addresses are printed instead and everything keeps running until Ctrl-C.

Everything is written under demo-run/ (git-ignored) and every process started is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "demo-run"


def banner(text: str) -> None:
    print(f"\n{'=' * 78}\n{text}\n{'=' * 78}", flush=True)


def make_photo(code: str, tps: str, seed: int, severity: str = "normal",
               bad: str | None = None) -> tuple[bytes, dict[str, int]]:
    """A generated photo of a filled sheet (validation-split digits) and the values written on it."""
    from tpskit.forms import load_templates
    from tpskit.sheets.bad_captures import BAD_CAPTURES
    from tpskit.sheets.camera import photograph
    from tpskit.sheets.digits_data import load_validation_digits
    from tpskit.sheets.fill import fill_sheet, random_result

    t = load_templates()[code]
    rng = np.random.default_rng(seed)
    sheet = fill_sheet(t, tps, random_result(t, rng), rng, load_validation_digits(), severity)
    jpeg = BAD_CAPTURES[bad](sheet, rng, severity=severity) if bad else photograph(sheet.page, rng, severity)
    return jpeg, sheet.values


def reader_demo(out: Path) -> None:
    from tpskit.cli import main as tpskit

    banner("1. Reader: photographed sheets in, values with confidences out")
    out.mkdir(parents=True, exist_ok=True)
    tps = "3201012001001"
    shots = [("PPWP", "normal", None, 1), ("KWK", "normal", None, 2), ("PPWP", "hard", None, 3),
             ("KWK", "normal", "marker_missing", 4), ("PPWP", "normal", "wrong_tps", 5)]
    paths = []
    for code, severity, bad, seed in shots:
        jpeg, values = make_photo(code, tps, seed, severity, bad)
        name = f"{code.lower()}-{severity}" + (f"-{bad}" if bad else "")
        path = out / f"{name}.jpg"
        path.write_bytes(jpeg)
        (out / f"{name}.truth.json").write_text(json.dumps(values, indent=1))
        paths.append(str(path))
    print(f"$ tpskit read --table --tps {tps} --debug-dir {out / 'debug'} {out}/*.jpg\n")
    code = tpskit(["read", "--table", "--tps", tps, "--debug-dir", str(out / "debug"), *paths])
    print(f"\n(exit status {code}: 3 means at least one photo was refused, as two of these should be;"
          f" debug images with every reading drawn are in {out / 'debug'})")


#: Three polling stations in two villages of two kecamatan, so the tally has something to add up.
KIT_TPS = ("3201012001001", "3201012001002", "3201022003001")


def trust_demo(out: Path) -> dict:
    from tpskit.demo_trust import run_trust_demo
    from tpskit.edge.reader.digit_model import load_digit_model
    from tpskit.edge.reader.pipeline import ReadOptions, read_sheet
    from tpskit.forms import load_templates

    banner("2. Trust chain: provision, sign, deliver over mutual TLS, verify, store, acknowledge, tally")
    templates, model = load_templates(), load_digit_model()
    readings = []
    for i, tps in enumerate(KIT_TPS):
        jpeg, _ = make_photo("PPWP", tps, seed=100 + i, severity="normal")
        result = read_sheet(jpeg, templates, model, ReadOptions(expected_tps=tps), photo=f"kit-{i + 1:02d}.jpg")
        print(f"kit for TPS {tps}: sheet read {result.status}")
        readings.append((result.to_dict(), jpeg))
    return run_trust_demo(out, readings, during=kit_daemon_demo, pages=show_pages)


def kit_daemon_demo(district_root: Path, kits: list) -> None:
    """The first kit again, now run by its daemon with simulated camera and buttons: a refused capture
    (a hand over a corner), the retake, the Confirm press, the district's receipt."""
    from tpskit.demo_kit import drive_kit

    banner("3. Kit daemon: simulated button presses, from capture to the district's receipt")
    kit = kits[0]
    covered, _ = make_photo("PPWP", kit.tps, seed=300, severity="normal", bad="marker_missing")
    good, truth = make_photo("PPWP", kit.tps, seed=301, severity="normal")
    run = drive_kit(kit.folder / "kit.toml", [covered, good], truth=truth, keep_running=True)
    _KIT.append(run)  # still running: its review page is shown or photographed with the dashboard (part 4)
    print(f"kit daemon finished in state '{run.state}' (submission {run.submission_id})")
    banner("District, after the kit daemon's result")


#: The kit daemon of part 3, kept running for part 4 (its review page); stopped by main().
_KIT: list = []


def show_pages(urls: dict[str, str]) -> None:
    """DEMO_SERVE=1: print the pages' addresses and keep serving until Ctrl-C. Otherwise save screenshots of
    them into demo-run/ (a headless Chromium from the system's packages)."""
    if _KIT and _KIT[0].page:
        urls = {**urls, "kit review screen": _KIT[0].page.rstrip("/")}
    if os.environ.get("DEMO_SERVE") == "1":
        import signal

        def stop(*_: object) -> None:
            raise KeyboardInterrupt

        # Ctrl-C, and a plain `kill` too, stop the demo through its cleanup (a shell that starts it in the
        # background leaves SIGINT ignored).
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        banner("4. Pages: open these addresses in a browser on this machine (Ctrl-C stops the demo)")
        for name, url in urls.items():
            print(f"  {name}: {url}/", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping", flush=True)
        return
    banner("4. Pages: screenshots (DEMO_SERVE=1 make demo keeps them served instead)")
    try:
        for path in save_screenshots(urls, RUN):
            print(f"  {path}")
    except Exception as e:  # the demo's other parts stand; say what is missing
        print(f"  no screenshots: {e}")


def save_screenshots(urls: dict[str, str], out: Path) -> list[Path]:
    import urllib.request

    from tpskit.localhost import wait_for
    from tpskit.web.browser import save_png, set_viewport, start_chromium

    saved = []
    driver = start_chromium()
    try:
        kit = urls.get("kit review screen")
        if kit:  # the touch display's two sizes
            for w, h in ((720, 1280), (800, 480)):
                set_viewport(driver, w, h)
                driver.get(kit + "/")
                wait_for(lambda: driver.execute_script("return document.body.dataset.paintedMs || null"), 30,
                         "the kit page")
                saved.append(save_png(driver, out / f"kit-{w}x{h}.png"))
        dash = urls.get("dashboard")
        if dash:
            set_viewport(driver, 1280, 900)
            driver.get(dash + "/")
            wait_for(lambda: driver.find_element("id", "live-status").text.startswith("live"), 15, "live updates")
            saved.append(save_png(driver, out / "dashboard.png"))
            driver.get(dash + "/tally?level=tps")
            saved.append(save_png(driver, out / "dashboard-tally.png"))
            with urllib.request.urlopen(dash + "/download/status.json", timeout=30) as r:
                current = [row["submission_id"] for row in json.loads(r.read()) if row["submission_id"]]
            if current:
                driver.get(f"{dash}/result/{current[0]}")
                # The photo is reread by the kit's reader in a subprocess; the page updates itself.
                wait_for(lambda: driver.find_elements("css selector", "svg.overlay")
                         or "could not be reread" in driver.find_element("id", "sheet").text, 120, "the reread")
                saved.append(save_png(driver, out / "dashboard-result.png", full_page=True))
    finally:
        driver.quit()
    return saved


def main() -> int:
    if RUN.exists():
        shutil.rmtree(RUN)
    RUN.mkdir()
    reader_demo(RUN / "reader")
    try:
        summary = trust_demo(RUN)
    finally:
        for run in _KIT:
            if run.stop is not None:
                run.stop()
    print(f"\nFor observers: {RUN / 'district' / 'ca.pem'} and {RUN / 'district' / 'signed-results.jsonl'}"
          f"\n  re-verify and recount with: .venv/bin/tpskit verify {RUN / 'district' / 'signed-results.jsonl'} "
          f"--ca {RUN / 'district' / 'ca.pem'} --tally")
    return 0 if summary and summary["recount_equal"] and summary["verified"] == summary["exported"] else 1


if __name__ == "__main__":
    sys.exit(main())
