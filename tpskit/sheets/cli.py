"""`tpskit form`: print blank forms at true scale, and generate filled, photographed test sheets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tpskit.forms import Template, TemplateError, load_template, load_templates, template_by_id, valid_tps

SEVERITIES = ("clean", "normal", "hard")


def resolve_template(ref: str) -> Template:
    """A template by id (`c-hasil-ppwp-2024`), form code (`PPWP`) or path to a template JSON file."""
    path = Path(ref)
    if ref.endswith(".json") or path.is_file():
        try:
            return load_template(path)
        except TemplateError as e:
            raise click.BadParameter(str(e), param_hint="TEMPLATE") from e
    templates = load_templates()
    found = templates.get(ref) or templates.get(ref.upper()) or template_by_id(templates.values(), ref)
    if found is None:
        known = ", ".join(f"{t.id} ({code})" for code, t in sorted(templates.items()))
        raise click.BadParameter(f"{ref!r} is not a template id, form code or JSON file; installed: {known}",
                                 param_hint="TEMPLATE")
    return found


def _check_tps(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not valid_tps(value):
        raise click.BadParameter(
            f"{value!r} is not a TPS code: it must be 13 digits, the 10-digit village code followed by the "
            "3-digit TPS number (e.g. 3201012001001)")
    return value


@click.group()
def form() -> None:
    """Render printable blank forms and filled test sheets."""


@form.command()
@click.argument("template")
@click.option("--tps", required=True, callback=_check_tps, help="13-digit TPS code printed in the QR.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="blank.pdf (true-scale page for a printer at 100 %) or blank.png.")
@click.option("--dpi", default=300, show_default=True, type=click.IntRange(100, 1200))
def render(template: str, tps: str, output: Path, dpi: int) -> None:
    """Render the blank sheet of one TPS as a PDF or PNG at true scale."""
    from PIL import Image

    from tpskit.sheets.render import render_blank_gray

    t = resolve_template(template)
    suffix = output.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise click.BadParameter("the output must end in .pdf or .png", param_hint="-o")
    gray = render_blank_gray(t, tps, dpi / 25.4)
    img = Image.fromarray(gray)
    output.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".pdf":
        # Bi-level at the printer's resolution (CCITT G4 inside the PDF): crisp markers, a small file,
        # and the page size in points follows from pixels / dpi, so 100 % printing gives the template's mm.
        img.point(lambda v: 255 if v >= 160 else 0).convert("1").save(output, "PDF", resolution=float(dpi))
    else:
        img.save(output, "PNG", dpi=(dpi, dpi))
    click.echo(f"{output}: {t.id} for TPS {tps}, {t.page.width_mm:g} x {t.page.height_mm:g} mm at {dpi} dpi")


@form.command()
@click.argument("template")
@click.option("--tps", required=True, callback=_check_tps, help="13-digit TPS code printed in the QR.")
@click.option("--count", default=10, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--severity", default="normal", show_default=True, type=click.Choice(SEVERITIES))
@click.option("--seed", default=0, show_default=True, type=int, help="Sheet i uses the seed (seed, i).")
@click.option("--bad", "bad", default=None, metavar="REASON",
              help="Make every photo a bad capture of this reason (marker_missing, glare, ...).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path))
def fill(template: str, tps: str, count: int, severity: str, seed: int, bad: str | None, output: Path) -> None:
    """Generate filled, photographed sheets: DIR/NNNN.jpg and DIR/NNNN.truth.json."""
    from tpskit.progress import progress
    from tpskit.sheets.bad_captures import BAD_CAPTURES
    from tpskit.sheets.digits_data import DigitsDataError, load_validation_digits

    t = resolve_template(template)
    if bad is not None and bad not in BAD_CAPTURES:
        raise click.BadParameter(f"unknown reason {bad!r}; one of {', '.join(BAD_CAPTURES)}", param_hint="--bad")
    try:
        digits = load_validation_digits()  # validation handwriting only, never the training digits
    except DigitsDataError as e:
        raise click.ClickException(str(e)) from e
    output.mkdir(parents=True, exist_ok=True)
    with progress(range(count), count, f"{t.id} sheets") as sheets:  # ~0.5 s a sheet: a bar when watched
        for i in sheets:
            jpeg, truth = _filled_photo(t, tps, (seed, i), severity, bad, digits)
            (output / f"{i:04d}.jpg").write_bytes(jpeg)
            (output / f"{i:04d}.truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    click.echo(f"{output}: {count} {'bad (' + bad + ')' if bad else severity} photo(s) of {t.id} for TPS {tps}")


def _filled_photo(t: Template, tps: str, seed: tuple[int, int], severity: str, bad: str | None,
                  digits: Any) -> tuple[bytes, dict[str, Any]]:
    """One filled sheet photographed (or spoilt as the bad capture `bad`), and its truth."""
    import numpy as np

    from tpskit.sheets.bad_captures import BAD_CAPTURES
    from tpskit.sheets.camera import photograph_with_truth
    from tpskit.sheets.fill import fill_sheet, random_result

    rng = np.random.default_rng(list(seed))
    sheet = fill_sheet(t, tps, random_result(t, rng), rng, digits, severity)  # type: ignore[arg-type]
    truth = dict(sheet.truth, seed=list(seed), reason=bad)
    if bad is not None:
        return BAD_CAPTURES[bad](sheet, rng, severity=severity), truth
    photo = photograph_with_truth(sheet.page, rng, severity)  # type: ignore[arg-type]
    truth["photo"] = {"homography_page_px_to_frame": np.round(photo.homography, 6).tolist(),
                      "page_px_per_mm": sheet.px_per_mm, "quarter_turns": photo.shot.quarter_turns,
                      "size": list(photo.shot.size)}
    return photo.jpeg, truth
