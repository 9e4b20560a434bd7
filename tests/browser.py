"""A real headless Chromium for page tests: Debian's `chromium` and `chromium-driver` (installed by `make
system-deps`), driven by Selenium; nothing is downloaded at run time. One browser serves the whole test
session (`chromium` fixture in conftest.py): a test sets the window size it needs.

Also the checks every page gets: screenshots saved as test artifacts (test-artifacts/screens/, git-ignored;
copied into docs/screens/ for the README with SAVE_SCREENS=1), and the keyboard and screen-reader basics:
every control has a label, every image a text alternative, text contrast at least WCAG AA, and Tab
reaches the controls with a visible focus mark.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "screens"
DOC_SCREENS = ROOT / "docs" / "screens"
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


def screenshot(driver: Any, name: str, *, full_page: bool = False) -> Path:
    """Save the page as test-artifacts/screens/NAME.png (and docs/screens/NAME.png when SAVE_SCREENS=1)."""
    import base64

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
    else:
        driver.save_screenshot(str(path))
    if os.environ.get("SAVE_SCREENS") == "1":
        DOC_SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_SCREENS / path.name)
    return path


# The contrast ratio of every element with its own text, against the first opaque background behind it
# (WCAG 2 relative luminance). Returns the failures: [text, ratio, needed].
_CONTRAST_JS = r"""
function lum(c) {
  const v = c.map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}
function rgba(s) { const m = s.match(/[\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; }
function bg(el) {
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0.5) return c;
  }
  return [255, 255, 255, 1];
}
const out = [];
for (const el of document.querySelectorAll("body *")) {
  const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const st = getComputedStyle(el);
  if (st.visibility === "hidden" || st.display === "none" || el.getClientRects().length === 0) continue;
  if (el.closest("svg, .visually-hidden, .skip")) continue;
  const fg = rgba(st.color), b = bg(el);
  const l1 = lum(fg), l2 = lum(b);
  const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  const px = parseFloat(st.fontSize), bold = parseInt(st.fontWeight) >= 700;
  const need = (px >= 24 || (bold && px >= 18.66)) ? 3 : 4.5;
  if (ratio < need) out.push([el.textContent.trim().slice(0, 40), Math.round(ratio * 100) / 100, need]);
}
return out;
"""

# Controls without an accessible name (label, aria-label, aria-labelledby, or a button's text), and images
# without a text alternative.
_LABELS_JS = r"""
const out = [];
for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea, button")) {
  const named = (el.labels && el.labels.length) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")
    || (el.tagName === "BUTTON" && el.textContent.trim());
  if (!named) out.push(el.outerHTML.slice(0, 80));
}
for (const el of document.querySelectorAll("img")) if (!el.hasAttribute("alt")) out.push(el.outerHTML.slice(0, 80));
for (const el of document.querySelectorAll("svg[role=img]"))
  if (!el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby")) out.push(el.outerHTML.slice(0, 80));
if (!document.documentElement.lang) out.push("<html> without lang");
if (!document.title) out.push("no <title>");
return out;
"""


def contrast_failures(driver: Any) -> list[Any]:
    return driver.execute_script(_CONTRAST_JS)


def unlabelled(driver: Any) -> list[str]:
    return driver.execute_script(_LABELS_JS)


def tab_stops(driver: Any, n: int) -> list[dict[str, Any]]:
    """Press Tab n times from the top of the page; per stop, the focused element and whether a focus mark
    (an outline or a box shadow) is drawn."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
    stops = []
    for _ in range(n):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        stops.append(driver.execute_script("""
            const e = document.activeElement, s = getComputedStyle(e);
            return {tag: e.tagName, text: (e.textContent || e.name || "").trim().slice(0, 30),
                    marked: (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== "none"};
        """))
    return stops
