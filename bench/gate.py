"""The capture gate's curves: how well the boxes read as a condition worsens, against what the gate measures.

    .venv/bin/python bench/gate.py [--per-level 16] [--sweeps dark,focus,...] [--write-md]

Each sweep takes one physical condition from harmless to unreadable, everything else as in a clean photo:
- dark: exposure (paper white = exposure x 255), with the sensor noise a dim scene brings;
- focus: defocus, sigma in mm on the sheet; focus_far: the same with the sheet at 5.5 px/mm (the far end of
  the framing range, decoded at full size);
- glare: a specular reflection over a field, its strength (1 = white at its centre; above, a saturated core);
- size: full-resolution pixels per mm on the sheet (how far the sheet is).

Every photo is read with the gate measuring but not refusing (`ReadOptions(enforce_gate=False)`), so each
level shows what reading would give: box accuracy (written digits and empty boxes read as their class),
fields wrong but not sent to review (silent errors), and the gate's measurement. For glare, which is
local, boxes are binned by their own count of faded line stretches. The thresholds in
edge/reader/quality.py are chosen from these tables: refuse where box accuracy falls, with a margin,
and never where a person reads the sheet easily (bench/read.py's hard set is the check on that side).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "gate"
TPS = "3201012001001"
SWEEPS: dict[str, list[float]] = {
    "dark": [0.5, 0.25, 0.14, 0.08, 0.06, 0.045, 0.035, 0.025, 0.018],
    "focus": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.42, 0.44, 0.46, 0.5],
    "focus_far": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.42, 0.44, 0.46, 0.5],
    "glare": [0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0, 1.3],
    "size": [7.0, 6.0, 5.0, 4.5, 4.0, 3.5, 3.0, 2.5],
}
#: The sheet's size in the frame for the "focus_far" sweep (full-resolution px/mm): the far end of the
#: framing range (bench/read.py's hard set reaches 4.6), where the photo is decoded at half size.
FAR_PX_PER_MM = 5.5
MEASURE = {"dark": "line_contrast", "focus": "line_width", "focus_far": "line_width",
           "glare": "faded_line_stretches", "size": "px/mm"}


def _path(sweep: str, level: float, code: str, i: int) -> Path:
    return OUT / sweep / f"{level:g}" / f"{code}_{i:03d}.jpg"


def _generate(job: tuple[str, float, str, int, int]) -> None:
    sweep, level, code, i, seed = job
    path = _path(sweep, level, code, i)
    if path.exists() and path.with_suffix(".json").exists():
        return
    from tpskit.forms import load_templates
    from tpskit.sheets.bad_captures import glare
    from tpskit.sheets.camera import fill_for_px_per_mm, projection, sample_shot, shoot
    from tpskit.sheets.digits_data import load_validation_digits
    from tpskit.sheets.fill import fill_sheet, random_result, sample_pen

    t = load_templates()[code]
    rng = np.random.default_rng([seed, i, sum(map(ord, sweep + code))])
    sheet = fill_sheet(t, TPS, random_result(t, rng), rng, load_validation_digits(), "normal",
                       pen=sample_pen(rng, "normal"))
    path.parent.mkdir(parents=True, exist_ok=True)
    shot = sample_shot(rng, "clean")
    ph, pw = sheet.page.shape[:2]
    if sweep == "glare":
        data = glare(sheet, rng, severity="clean", strength=level)
    else:
        if sweep == "dark":
            shot = replace(shot, exposure=level, noise_sigma=shot.noise_sigma * (1 + 0.8 * (0.5 - level) / 0.5))
        elif sweep in ("focus", "focus_far"):
            if sweep == "focus_far":
                shot = replace(shot, fill=fill_for_px_per_mm(shot, (pw, ph), sheet.px_per_mm, FAR_PX_PER_MM))
            k = projection((pw, ph), sheet.px_per_mm, shot).px_per_mm_at(105, 148)
            shot = replace(shot, blur_sigma=level * k)
        elif sweep == "size":
            shot = replace(shot, fill=fill_for_px_per_mm(shot, (pw, ph), sheet.px_per_mm, level))
        data = shoot(sheet.page, shot, rng).jpeg
    path.write_bytes(data)
    path.with_suffix(".json").write_text(json.dumps({"values": sheet.values, "fields": sheet.truth["fields"]}))


def _box_faded(data: bytes, templates: dict) -> list[int] | None:
    """Per box, its count of faded line stretches (as the gate measures it), or None if no grid."""
    from tpskit.edge.reader.decode import decode_photo
    from tpskit.edge.reader.grid import fit_grid
    from tpskit.edge.reader.locate import locate_sheet
    from tpskit.edge.reader.pipeline import _read_qr
    from tpskit.edge.reader.quality import glare_stretches
    from tpskit.edge.reader.trace import Refused, Trace

    d = decode_photo(data)
    try:
        loc = locate_sheet(d.gray, d.scale, templates, Trace())
        code, _ = _read_qr(d.gray, templates, loc.geom, loc.template)
    except Refused:
        return None
    return glare_stretches(fit_grid(d.gray, loc.geom, templates[code])).tolist()


def run(per_level: int, seed: int, workers: int, sweeps: list[str]) -> dict:
    import cv2

    from tpskit.forms import load_templates

    codes = sorted(load_templates())
    jobs = [(s, lv, c, i, seed) for s, levels in SWEEPS.items() if s in sweeps for lv in levels
            for i in range(per_level // len(codes)) for c in codes]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_generate, jobs, chunksize=4))
    cv2.setNumThreads(1)
    from tpskit.edge.reader.digit_model import load_digit_model
    from tpskit.edge.reader.pipeline import ReadOptions, read_sheet

    templates = load_templates()
    model = load_digit_model()
    report: dict = {}
    for sweep, levels in SWEEPS.items():
        if sweep not in sweeps:
            continue
        rows = []
        glare_bins: dict[int, list[int]] = {}
        for lv in levels:
            row = dict(level=lv, photos=0, located=0, boxes=0, right=0, silent=0, review=0, fields=0, refused=0,
                       reasons={}, measure=[])
            for _, _, code, i, _ in [j for j in jobs if j[0] == sweep and j[1] == lv]:
                p = _path(sweep, lv, code, i)
                truth = json.loads(p.with_suffix(".json").read_text())
                data = p.read_bytes()
                row["photos"] += 1
                gated = read_sheet(data, templates, model, ReadOptions(expected_tps=TPS))
                if gated.status == "rejected":
                    row["refused"] += 1
                    row["reasons"][gated.reason] = row["reasons"].get(gated.reason, 0) + 1
                r = read_sheet(data, templates, model, ReadOptions(expected_tps=TPS, enforce_gate=False))
                if MEASURE[sweep] in r.gate:
                    row["measure"].append(r.gate[MEASURE[sweep]])
                if r.status == "rejected":
                    continue
                row["located"] += 1
                faded = _box_faded(data, templates) if sweep == "glare" else None
                k = 0
                for name, f in r.fields.items():
                    want = truth["values"][name]
                    row["fields"] += 1
                    row["review"] += f.status == "review"
                    row["silent"] += f.status != "review" and f.value != want
                    for box, tb in zip(f.boxes, truth["fields"][name]["boxes"], strict=True):
                        ok = box.digit == tb["digit"]
                        row["boxes"] += 1
                        row["right"] += ok
                        if faded is not None:
                            glare_bins.setdefault(min(faded[k], 12), [0, 0])
                            glare_bins[min(faded[k], 12)][0] += 1
                            glare_bins[min(faded[k], 12)][1] += ok
                        k += 1
            rows.append(row)
            print(f"{sweep} {lv:g}: boxes {100 * row['right'] / max(1, row['boxes']):.2f} % "
                  f"silent {row['silent']} refused {row['refused']}/{row['photos']} {row['reasons']} "
                  f"measure {statistics.median(row['measure']) if row['measure'] else float('nan'):.3g}",
                  file=sys.stderr)
        report[sweep] = {"rows": rows, "glare_bins": glare_bins}
    return report


def markdown(report: dict, per_level: int) -> str:
    from tpskit.edge.reader import quality

    thresholds = {"dark": f"refused below {quality.MIN_LINE_CONTRAST:g} grey levels (`MIN_LINE_CONTRAST`)",
                  "focus": f"refused above {quality.MAX_LINE_WIDTH_MM:g} mm (`MAX_LINE_WIDTH_MM`)",
                  "focus_far": f"refused above {quality.MAX_LINE_WIDTH_MM:g} mm (`MAX_LINE_WIDTH_MM`); the sheet at "
                               f"{FAR_PX_PER_MM:g} px/mm",
                  "glare": f"refused above {quality.GLARE_MAX_FADED} faded stretches in a box "
                           f"(`GLARE_MAX_FADED`; a stretch fades below {quality.GLARE_FADED:g} of the sheet's "
                           f"typical line where the paper is at least {quality.GLARE_PAPER:g})",
                  "size": f"refused below {quality.MIN_FULLRES_PX_PER_MM:g} px/mm (`MIN_FULLRES_PX_PER_MM`)"}
    units = {"dark": "exposure", "focus": "defocus sigma (mm)", "focus_far": "defocus sigma (mm)",
             "glare": "specular strength", "size": "px/mm"}
    lines = [f"{per_level} photos per level, both templates, everything else clean; read with the gate measuring "
             "but not refusing, so each row shows what reading would give.", ""]
    for sweep, data in report.items():
        lines += [f"**{sweep}** (measure: `{MEASURE[sweep]}`; {thresholds[sweep]})", "",
                  f"| {units[sweep]} | photos | boxes read right | fields wrong and not in review | fields to review "
                  f"| measure (median) | refused by the gate |", "|---|---|---|---|---|---|---|"]
        for row in data["rows"]:
            m = f"{statistics.median(row['measure']):.3g}" if row["measure"] else "-"
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(row["reasons"].items()))
            acc = f"{100 * row['right'] / row['boxes']:.2f} %" if row["boxes"] else "-"
            rev = f"{100 * row['review'] / row['fields']:.1f} %" if row["fields"] else "-"
            lines.append(f"| {row['level']:g} | {row['photos']} | {acc} | {row['silent']} | {rev} | {m} | "
                         f"{row['refused']}{' (' + reasons + ')' if reasons else ''} |")
        if data["glare_bins"]:
            lines += ["", "Boxes by their own faded line stretches (of 12):", "",
                      "| faded stretches | boxes | read right |", "|---|---|---|"]
            for k in sorted(data["glare_bins"]):
                n, ok = data["glare_bins"][k]
                lines.append(f"| {k} | {n} | {100 * ok / n:.1f} % |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-level", type=int, default=16)
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--sweeps", default=",".join(SWEEPS), help=f"comma-separated, of {', '.join(SWEEPS)}")
    ap.add_argument("--write-md", action="store_true", help="replace the gate section of BENCHMARKS.md")
    a = ap.parse_args()
    sweeps = [s for s in a.sweeps.split(",") if s]
    unknown = set(sweeps) - set(SWEEPS)
    if unknown:
        ap.error(f"unknown sweep(s) {', '.join(sorted(unknown))}; known: {', '.join(SWEEPS)}")
    if a.write_md and set(sweeps) != set(SWEEPS):
        ap.error("--write-md replaces the whole gate section: run every sweep")
    report = run(a.per_level, a.seed, a.workers, sweeps)
    md = markdown(report, a.per_level)
    print(md)
    if a.write_md:
        path = ROOT / "BENCHMARKS.md"
        head = "## Capture gate (bench/gate.py)"
        text = path.read_text()
        start = text.find(head)
        if start == -1:
            text = text.rstrip() + f"\n\n{head}\n\n{md}\n"
        else:
            end = text.find("\n## ", start + len(head))
            text = text[:start] + f"{head}\n\n{md}\n" + (text[end:] if end != -1 else "")
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
