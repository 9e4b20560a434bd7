"""`tpskit read PHOTO...`: read photographed tally sheets, as a table or one JSON object per line.

Exit status: 0 when every photo was read (ok or review), 3 when any was rejected, 2 for usage errors
(a photo path that does not exist or is a folder, a bad --model or --templates), with one line on stderr.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from tpskit.commands import wants_json
from tpskit.events import log_event
from tpskit.forms import TemplateError, load_templates, valid_tps

from .reader.pipeline import ReadOptions, read_sheet
from .reader.types import ReadingResult

log = logging.getLogger("tpskit.read")
EXIT_REJECTED = 3


def _print_table(r: ReadingResult) -> None:
    head = f"{r.photo}: {r.status.upper()}"
    if r.template:
        head += f"  form {r.form_code} ({r.template})  TPS {r.tps}"
    click.echo(head)
    if r.status == "rejected":
        click.echo(f"  reason: {r.reason}")
        if r.message:
            click.echo(f"  {r.message.id}\n  {r.message.en}")
        return
    click.echo(f"  {'field':<18}{'value':>6}  {'confidence':>10}  status")
    for name, f in r.fields.items():
        value = "?" if f.value is None else str(f.value)
        note = ""
        if f.ocr_value is not None and f.ocr_value != f.value:
            note = f"  (digits read {f.ocr_value})"
        if f.bubbles == "disagree":
            note += "  (bubbles disagree)"
        click.echo(f"  {name:<18}{value:>6}  {f.confidence:>10.4f}  {f.status}{note}")
    failed = [c.id for c in r.checks if not c.passed]
    click.echo(f"  checks: {len(r.checks) - len(failed)}/{len(r.checks)} pass" +
               (f"; failing: {', '.join(failed)}" if failed else ""))
    click.echo(f"  time: {sum(r.timings_ms.values()):.1f} ms")


@click.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--templates", "templates_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of form templates (default: the official templates shipped with tpskit).")
@click.option("--tps", help="The kit's TPS code: a sheet of another TPS is refused.")
@click.option("--registered-voters", type=click.IntRange(min=1),
              help="Registered voters of the TPS: tightens the fields that have a maximum.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Digit model (.tflite); default: the one shipped with tpskit.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per photo, one per line (the default when stdout is not a terminal).")
@click.option("--table", "as_table", is_flag=True,
              help="A table a person reads (the default when stdout is a terminal).")
@click.option("--debug-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the rectified sheet with every reading drawn on it here.")
def read(photos: tuple[Path, ...], templates_dir: Path | None, tps: str | None,
         registered_voters: int | None, model_path: Path | None, as_json: bool, as_table: bool,
         debug_dir: Path | None) -> int:
    """Read photographed C.Hasil sheets."""
    import cv2

    # One OpenCV thread, as the kit's latency is measured (bench/read.py): the worker threads' own malloc
    # arenas kept 1.5-3 MB of the marker search's buffers, on a peak RSS that has a target (issue 8).
    cv2.setNumThreads(1)
    as_json = wants_json(as_json, as_table)
    if tps is not None and not valid_tps(tps):
        raise click.BadParameter("a TPS code is 13 digits (village code + TPS number)", param_hint="--tps")
    try:
        templates = load_templates(templates_dir)
    except TemplateError as e:
        raise click.BadParameter(str(e), param_hint="--templates") from e
    from .reader.digit_model import DigitModelError, load_digit_model

    try:
        model = load_digit_model(model_path)
    except DigitModelError as e:
        raise click.BadParameter(str(e), param_hint="--model") from e
    rejected = 0
    for photo in photos:
        sink = None
        if debug_dir is not None:
            debug_dir.mkdir(parents=True, exist_ok=True)

            def sink(name: str, image, photo: Path = photo) -> None:
                import cv2

                cv2.imwrite(str(debug_dir / f"{photo.stem}.{name}.png"), image)

        opts = ReadOptions(expected_tps=tps, registered_voters=registered_voters, debug=sink)
        try:
            data = photo.read_bytes()
        except OSError:
            data = b""  # an unreadable path is a rejected photo, like an empty file
        result = read_sheet(data, templates, model, opts, photo=str(photo))
        if result.status == "rejected":
            rejected += 1
            log_event(log, "read.rejected", photo=str(photo), reason=result.reason, tps=result.tps)
        else:
            log_event(log, "read.done", photo=str(photo), status=result.status, tps=result.tps,
                      template=result.template)
        if as_json:
            click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            _print_table(result)
    return EXIT_REJECTED if rejected else 0
