"""Page tests in a real headless Chromium (tpskit.web.browser: Debian's `chromium` and `chromium-driver`,
driven by Selenium; nothing is downloaded at run time). One browser serves the whole test session
(`chromium` fixture in conftest.py): a test sets the viewport it needs.

Also the checks every page gets: screenshots saved as test artifacts (test-artifacts/screens/, git-ignored;
copied into docs/screens/ for the README with SAVE_SCREENS=1), and the keyboard and screen-reader basics:
every control has a label, every image a text alternative, text contrast at least WCAG AA, and Tab
reaches the controls with a visible focus mark.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tpskit.web.browser import save_png, set_viewport, start_chromium

__all__ = ["contrast_failures", "screenshot", "set_viewport", "start_chromium", "tab_stops", "unlabelled"]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "screens"
DOC_SCREENS = ROOT / "docs" / "screens"


def screenshot(driver: Any, name: str, *, full_page: bool = False) -> Path:
    """Save the page as test-artifacts/screens/NAME.png (and docs/screens/NAME.png when SAVE_SCREENS=1)."""
    path = save_png(driver, ARTIFACTS / f"{name}.png", full_page=full_page)
    if os.environ.get("SAVE_SCREENS") == "1":  # the README's copies, in 256 colours (a third of the size)
        from PIL import Image

        DOC_SCREENS.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im.convert("RGB").quantize(256).save(DOC_SCREENS / path.name, optimize=True)
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


def text_of(driver: Any, selector: str) -> str | None:
    """The text of the first element matching `selector`, read in one script (a live page may replace its
    elements between a find and a read), or None."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                                 selector)


def texts_of(driver: Any, selector: str) -> list[str]:
    return driver.execute_script("return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);",
                                 selector)


def attr_of(driver: Any, selector: str, name: str) -> str | None:
    return driver.execute_script("const e = document.querySelector(arguments[0]); "
                                 "return e ? e.getAttribute(arguments[1]) : null;", selector, name)
