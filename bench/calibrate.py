"""Calibrate the reader's confidence threshold on generated validation photos and record it in the card.

    .venv/bin/python bench/calibrate.py [--forms 100] [--write-card]

A field is `ok` on its own when its best value has at least this probability (and digits agree with
bubbles); the checks catch most of what slips past. The threshold is the lowest value of a grid at which
no wrong field is reported ok or resolved on the calibration photos (normal and hard), at that value and
every stricter one, taken one step stricter as a margin, and never below FLOOR: the checks do most of
the proving, but a field standing alone must be at least 99 % sure, for writers the model has never
seen. The calibration photos use their own seed, distinct from bench/read.py's and bench/officers.py's:
sheets written with validation-split digits (normal and hard) and sheets written by held-out officers
(tpskit.sheets.officer_digits, writers seeded from this seed, so not the benchmark's writers), none of
which the model trained on.

The same method then sets the stricter threshold for boxes read as one of the classes writers the model
never saw push their look-alikes into (pipeline.STRICT_CLASSES: an open 4 read as 9, a flagged 1 as 7;
`strict_p`), with the confidence threshold as chosen. Each photo is read once; the thresholds are applied
to its recorded box probabilities and bubble rows (the reading after the model is what they change).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import officers as bench_officers
import read as bench_read

ROOT = Path(__file__).resolve().parent.parent
GRID = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999)
STRICT_GRID = (0.99, 0.999, 0.9995, 0.9999, 0.99995, 0.99999)
SEED = 7
FLOOR = 0.99
SEVERITIES = ("normal", "hard")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forms", type=int, default=100, help="photos per severity")
    ap.add_argument("--officer-forms", type=int, default=100, help="photos per severity written by held-out officers")
    ap.add_argument("--officer-forms-hard", type=int, default=0,
                    help="photos written by held-out officers at hard severity (default: --officer-forms)")
    ap.add_argument("--write-card", action="store_true", help="record the result in models/digits_int8.json")
    a = ap.parse_args()
    bench_read.OUT = ROOT / "bench-out" / "calibrate"
    jobs, _ = bench_read.plan(a.forms, 0, 0, 0, 0, SEED)  # bench/read.py's mixed photos, this seed
    bench_read.generate([j for j in jobs if j[1] in SEVERITIES], [], os.cpu_count() or 1)
    bench_officers.OUT = ROOT / "bench-out" / "calibrate-officers"
    officer_forms = {"normal": a.officer_forms, "hard": a.officer_forms_hard or a.officer_forms}
    for sev, n in officer_forms.items():
        if n:
            bench_officers.generate(n, 0, SEED, (sev,))

    from tpskit.edge.reader import pipeline
    from tpskit.edge.reader.digit_model import load_digit_model
    from tpskit.edge.reader.pipeline import DEFAULT_CONFIDENCE, DEFAULT_STRICT_P, ReadOptions, read_sheet
    from tpskit.forms import load_templates
    from tpskit.models import DIGITS_CARD

    templates, model = load_templates(), load_digit_model()
    codes = sorted(templates)
    paths = [bench_read._job_path(*j[:5]) for j in jobs if j[1] in SEVERITIES]
    paths += [bench_officers.OUT / sev / f"{c}_{i:04d}.jpg" for sev in SEVERITIES for c in codes
              for i in range(officer_forms[sev] // len(codes))]
    photos = [(p, json.loads(p.with_suffix(".json").read_text())) for p in paths]
    t0 = time.time()
    # Each photo read once: what the model and the bubbles said, kept for every threshold below.
    seen: list[tuple] = []
    interpret = pipeline._interpret
    pipeline._interpret = lambda *args: seen.append(args[:4]) or interpret(*args)  # type: ignore[assignment]
    readings = []
    for p, truth in photos:
        seen.clear()
        r = read_sheet(p.read_bytes(), templates, model, ReadOptions(expected_tps=bench_read.TPS))
        readings.append((truth, seen[0] if seen else None, r))
    pipeline._interpret = interpret

    def score(**kw: float) -> dict:
        silent = review = fields = forms_ok = 0
        for truth, args, r in readings:
            if args is not None:
                r = interpret(*args, ReadOptions(expected_tps=bench_read.TPS, **kw), pipeline._Clock(), None)
            forms_ok += r.status == "ok"
            for name, want in truth["values"].items():
                f = r.fields.get(name)
                fields += 1
                if f is None:
                    continue
                review += f.status == "review"
                silent += f.status != "review" and f.value != want
        return {"silent_errors": silent, "review_pct": round(100 * review / fields, 2),
                "forms_ok_pct": round(100 * forms_ok / len(readings), 1)}

    def choose(grid: tuple[float, ...], key: str, floor: float, **fixed: float) -> tuple[float, list[dict]]:
        rows = []
        for tau in grid:
            rows.append({key: tau, **score(**{key: tau}, **fixed)})
            print(f"{key} {tau}: silent errors {rows[-1]['silent_errors']}, review {rows[-1]['review_pct']} %, "
                  f"forms ok {rows[-1]['forms_ok_pct']} %", flush=True)
        safe = [i for i, r in enumerate(rows) if all(x["silent_errors"] == 0 for x in rows[i:])]
        chosen = max(floor, grid[min(safe[0] + 1, len(grid) - 1)]) if safe else grid[-1]
        print(f"{key}: lowest safe {grid[safe[0]] if safe else None}; with one step of margin: {chosen}")
        return chosen, rows

    chosen, rows = choose(GRID, "confidence", FLOOR, strict_p=DEFAULT_STRICT_P)
    strict, strict_rows = choose(STRICT_GRID, "strict_p", 0.0, confidence=chosen)
    print(f"the reader uses confidence {DEFAULT_CONFIDENCE}, strict_p {DEFAULT_STRICT_P} ({time.time() - t0:.0f} s)")
    if a.write_card:
        card = json.loads(DIGITS_CARD.read_text())
        card["calibration"] = {
            "what": "reader confidence threshold: a field is ok on its own at or above it",
            "method": "lowest grid value with no wrong field reported ok or resolved on generated "
                      "validation photos (validation-split digits and held-out officers' handwriting, camera "
                      f"simulation) at it and every stricter value, one grid step stricter, and at least {FLOOR}",
            "command": f"bench/calibrate.py --forms {a.forms} --officer-forms {a.officer_forms} "
                       f"--officer-forms-hard {officer_forms['hard']} --write-card",
            "photos": {"severities": list(SEVERITIES), "per_severity": a.forms, "seed": SEED,
                       "officer_sheets_per_severity": officer_forms,
                       "officer_writers": f"held_out_hand(bench/officers.writer_seed({SEED}, template, i))"},
            "grid": rows,
            "threshold": chosen,
            "strict": {"what": "a box read as one of pipeline.STRICT_CLASSES below this leaves its field unsure",
                       "grid": strict_rows, "threshold": strict},
        }
        DIGITS_CARD.write_text(json.dumps(card, indent=2) + "\n")
    return 0 if (chosen, strict) == (DEFAULT_CONFIDENCE, DEFAULT_STRICT_P) else 1


if __name__ == "__main__":
    raise SystemExit(main())
