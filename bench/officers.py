"""Officers' handwriting on full sheets: held-out writers vs the validation digits, for one or more models.

    .venv/bin/python bench/officers.py [--forms 200] [--slips 100] [--model A.tflite ...] [--write-md]

Each officer sheet is written by one held-out writer (tpskit.sheets.officer_digits.held_out_hand: writers
and stroke constructions the model never trained on) in that writer's pen, photographed with the project's
camera simulation at the severity named. The "validation digits" rows are bench/read.py's photos (same seed,
same files in bench-out/read/). Scoring follows bench/read.py: every field of a refused sheet counts as not
read; a silent error is a wrong value not sent to review; a slip sheet (the officer added up wrongly) must
never come out ok. Reading runs in-process on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import read as bench_read

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "officers"
TPS = bench_read.TPS
SEVERITIES = ("normal", "hard")
#: Writer seeds: `seed + WRITER_STRIDE * template index + i` (calibration uses its own seed, so its own writers).
WRITER_STRIDE = 10_000


def writer_seed(seed: int, code_index: int, i: int) -> int:
    return seed + WRITER_STRIDE * code_index + i


def _generate(args: tuple[str, int, str, int, int, bool]) -> None:
    code, code_index, severity, i, seed, slip = args
    from tpskit.forms import load_templates
    from tpskit.sheets.camera import photograph
    from tpskit.sheets.fill import fill_sheet, random_result
    from tpskit.sheets.officer_digits import held_out_hand

    folder = OUT / ("slips" if slip else severity)
    path = folder / f"{code}_{i:04d}.jpg"
    if path.exists() and path.with_suffix(".json").exists():
        return
    t = load_templates()[code]
    rng = np.random.default_rng([seed, i, SEVERITIES.index(severity), sum(map(ord, code)), 8 + slip])
    values = random_result(t, rng)
    if slip:  # change one field of one equality check by 1-25, as bench/read.py's slips
        checks = [c for c in t.checks if c.relation == "equals"]
        while True:
            c = checks[int(rng.integers(len(checks)))]
            name = c.fields[int(rng.integers(len(c.fields)))]
            v = values[name] + int(rng.choice([-1, 1]) * rng.integers(1, 26))
            if 0 <= v <= t.field_map[name].capacity:
                values[name] = v
                break
    hand = held_out_hand(writer_seed(seed, code_index, i))
    sheet = fill_sheet(t, TPS, values, rng, hand.digits(12, seed=i), severity, style=hand.ink_style(rng, severity))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(photograph(sheet.page, rng, severity))
    truth = dict(sheet.truth, writer={"seed": hand.seed, "styles": list(hand.styles), "felt_tip": hand.felt_tip,
                                      "pen_mm": round(hand.pen_mm, 2)})
    path.with_suffix(".json").write_text(json.dumps(truth))


def generate(forms: int, slips: int, seed: int, severities: tuple[str, ...]) -> None:
    from tpskit.forms import load_templates

    codes = sorted(load_templates())
    jobs = [(c, k, s, i, seed, False) for s in severities for k, c in enumerate(codes)
            for i in range(forms // len(codes))]
    jobs += [(c, k, "normal", i, seed, True) for k, c in enumerate(codes) for i in range(slips // len(codes))]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_generate, jobs, chunksize=4))


def score(photos: list[Path], model, confidence: float | None = None) -> dict:
    """bench/read.py's figures for a list of photos with their truth files."""
    from tpskit.edge.reader.pipeline import ReadOptions, read_sheet
    from tpskit.forms import load_templates

    templates = load_templates()
    opts = ReadOptions(expected_tps=TPS) if confidence is None else ReadOptions(expected_tps=TPS, confidence=confidence)
    s = dict(forms=0, fields=0, correct=0, silent=0, review=0, forms_ok=0, rejected=0, ms=[])
    for p in photos:
        truth = json.loads(p.with_suffix(".json").read_text())
        data = p.read_bytes()
        t0 = time.perf_counter()
        r = read_sheet(data, templates, model, opts, photo=p.name)
        s["ms"].append((time.perf_counter() - t0) * 1000)
        s["forms"] += 1
        if r.status == "rejected":
            s["rejected"] += 1
            s["fields"] += len(truth["values"])
            continue
        s["forms_ok"] += r.status == "ok"
        for name, want in truth["values"].items():
            f = r.fields[name]
            s["fields"] += 1
            s["correct"] += f.value == want
            s["review"] += f.status == "review"
            if f.status != "review" and f.value != want:
                s["silent"] += 1
                print(f"SILENT ERROR {p.parent.name}/{p.name} {name}: read {f.value} ({f.status}), truth {want}",
                      file=sys.stderr)
    return s


def _pct(a: float, b: float) -> float:
    return 100.0 * a / b if b else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forms", type=int, default=200, help="forms per severity and handwriting")
    ap.add_argument("--slips", type=int, default=100, help="officer-written sheets with an arithmetic slip")
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--severities", default=",".join(SEVERITIES))
    ap.add_argument("--model", action="append", default=[], help="model file(s) to compare (default: committed)")
    a = ap.parse_args()
    sevs = tuple(a.severities.split(","))
    t0 = time.time()
    generate(a.forms, a.slips, a.seed, sevs)
    jobs, _ = bench_read.plan(a.forms, 0, 0, 0, 0, a.seed)  # bench/read.py's mixed validation-digit photos
    bench_read.generate([j for j in jobs if j[1] in sevs], [], os.cpu_count() or 1)
    print(f"photos ready in {time.time() - t0:.0f} s", file=sys.stderr)

    import cv2

    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from tpskit.edge.reader.digit_model import load_digit_model, model_version
    from tpskit.forms import load_templates

    codes = sorted(load_templates())
    n = a.forms // len(codes)
    sets = {}
    for sev in sevs:
        sets[f"validation digits, {sev}"] = [bench_read._job_path("mixed", sev, "all", c, i) for c in codes
                                             for i in range(n)]
        sets[f"held-out officers, {sev}"] = [OUT / sev / f"{c}_{i:04d}.jpg" for c in codes for i in range(n)]
    slips = sorted((OUT / "slips").glob("*.jpg"))
    lines = ["| model | handwriting, severity | forms | fields correct | silent errors | review | forms ok unaided "
             "| refused | read median ms |", "|---|---|---|---|---|---|---|---|---|"]
    for path in a.model or [None]:
        model = load_digit_model(path)
        name = model_version(path)
        for label, photos in sets.items():
            s = score(photos, model)
            lines.append(f"| {name} | {label} | {s['forms']} | {_pct(s['correct'], s['fields']):.2f} % | {s['silent']} "
                         f"| {_pct(s['review'], s['fields']):.2f} % | {_pct(s['forms_ok'], s['forms']):.1f} % "
                         f"| {_pct(s['rejected'], s['forms']):.1f} % | {statistics.median(s['ms']):.1f} |")
            print(lines[-1], flush=True)
        sl = score(slips, model)
        lines.append(f"| {name} | held-out officers' slips, normal | {sl['forms']} | - | - | - "
                     f"| {sl['forms_ok']} ok (must be 0) | {sl['rejected']} | - |")
        print(lines[-1], flush=True)
        if path is None or path == a.model[-1]:
            rss = bench_read.peak_rss_mb(sets[f"held-out officers, {sevs[0]}"][:5]) if path is None else None
            if rss is not None:
                lines.append(f"\nPeak RSS of `tpskit read` (committed model, 5 officer photos): {rss:.0f} MB.")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
