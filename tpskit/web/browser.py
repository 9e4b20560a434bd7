"""A real headless Chromium: Debian's `chromium` and `chromium-driver` (the Makefile's system-deps), driven by
Selenium (a dev dependency) with the driver's path given, so nothing is downloaded at run time. Used by the
page tests (tests/browser.py), bench/pages.py and `make demo`'s screenshots.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("TPSKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TPSKIT_CHROMEDRIVER", "/usr/bin/chromedriver"))


def start_chromium(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium under Selenium, from the system's packages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: run `make system-deps` (Debian packages chromium and "
                           "chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio",
                "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    # The driver's path is given, so Selenium Manager (which would download one) is never run.
    return webdriver.Chrome(options=opts, service=Service(executable_path=str(CHROMEDRIVER)))


def set_viewport(driver: Any, width: int, height: int) -> None:
    """The page's viewport exactly (the window's size includes no chrome in headless mode)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def save_png(driver: Any, path: Path, *, full_page: bool = False, max_height: int = 4000) -> Path:
    """The page as a PNG: the viewport, or the whole page (up to max_height CSS pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if full_page:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
    else:
        driver.save_screenshot(str(path))
    return path
