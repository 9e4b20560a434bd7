"""Outcome equivalence of the reader across a code change: read a fixed corpus of photos, write what the
reader reports for each, and compare with a stored run.

    .venv/bin/python bench/read_equivalence.py --write base.json PHOTO_OR_DIR...   # e.g. on main's code
    .venv/bin/python bench/read_equivalence.py --compare base.json                 # the same photos, again

Per photo: status, refusal reason, template, form, TPS; per field its value, confidence (rounded to 1e-6),
status, digits-only value and confidence, bubble agreement and every box's best/runner-up class and
probabilities; each check's outcome; the gate's measurements. `--compare` reads the photos listed in the
stored run (the corpus is fixed when the baseline is taken) and prints every difference, outcome
(status, reason, values, field statuses, checks) apart from the rest (confidences, box probabilities,
gate measurements); the exit status is 1 when anything differs. Speed-ups of the reader must report 0.
Timings are not compared. Runs in one process, one OpenCV thread, default ReadOptions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTCOME_KEYS = ("status", "reason", "template", "form_code", "tps", "checks")
OUTCOME_FIELD_KEYS = ("value", "status", "ocr_value", "bubbles")


def _photos(args: list[str]) -> list[Path]:
    out: list[Path] = []
    for a in args:
        p = Path(a)
        out.extend(sorted(p.rglob("*.jpg")) if p.is_dir() else [p])
    return out


def record(result: Any) -> dict[str, Any]:
    """What the reader reported about one photo, timings left out."""
    fields = {}
    for name, f in result.fields.items():
        fields[name] = {
            "value": f.value, "confidence": round(f.confidence, 6), "status": f.status,
            "ocr_value": f.ocr_value, "ocr_confidence": round(f.ocr_confidence, 6), "bubbles": f.bubbles,
            "boxes": [[b.digit, round(b.p, 6), b.alt, round(b.alt_p, 6), b.bubble] for b in f.boxes],
        }
    return {"status": result.status, "reason": result.reason, "template": result.template,
            "form_code": result.form_code, "tps": result.tps, "fields": fields,
            "checks": [[c.id, c.passed] for c in result.checks], "gate": dict(result.gate)}


def read_all(photos: list[Path]) -> dict[str, dict[str, Any]]:
    import cv2

    cv2.setNumThreads(1)
    from tpskit.edge.reader.digit_model import load_digit_model
    from tpskit.edge.reader.pipeline import ReadOptions, read_sheet
    from tpskit.forms import load_templates

    templates, model = load_templates(), load_digit_model()
    out = {}
    for i, p in enumerate(photos):
        out[str(p)] = record(read_sheet(p.read_bytes(), templates, model, ReadOptions(), photo=p.name))
        if (i + 1) % 25 == 0:
            print(f"{i + 1}/{len(photos)}", file=sys.stderr)
    return out


def differences(base: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(outcome differences, other differences) between two records of one photo."""
    outcome, other = [], []
    for k in OUTCOME_KEYS:
        if base[k] != new[k]:
            outcome.append(f"{k}: {base[k]!r} -> {new[k]!r}")
    for name in sorted(set(base["fields"]) | set(new["fields"])):
        a, b = base["fields"].get(name), new["fields"].get(name)
        if a is None or b is None:
            outcome.append(f"field {name}: {a!r} -> {b!r}")
            continue
        for k in a:
            if a[k] != b[k]:
                (outcome if k in OUTCOME_FIELD_KEYS else other).append(f"{name}.{k}: {a[k]!r} -> {b[k]!r}")
    for k in sorted(set(base["gate"]) | set(new["gate"])):
        if base["gate"].get(k) != new["gate"].get(k):
            other.append(f"gate.{k}: {base['gate'].get(k)!r} -> {new['gate'].get(k)!r}")
    return outcome, other


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, help="read the photos and store what the reader reports here")
    mode.add_argument("--compare", type=Path, help="read the photos of a stored run and compare with it")
    ap.add_argument("--save", type=Path, help="with --compare: also store this run here")
    ap.add_argument("photos", nargs="*", help="photos or folders (searched for *.jpg); --write only")
    args = ap.parse_args()
    if args.write:
        photos = _photos(args.photos)
        if not photos:
            ap.error("no photos")
        run = read_all(photos)
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(run, indent=1, sort_keys=True))
        print(f"{len(run)} photos -> {args.write}")
        return 0
    base = json.loads(args.compare.read_text())
    run = read_all([Path(p) for p in base])
    if args.save:
        args.save.write_text(json.dumps(run, indent=1, sort_keys=True))
    n_outcome = n_other = 0
    for p in base:
        outcome, other = differences(base[p], run[p])
        n_outcome += bool(outcome)
        n_other += bool(other)
        for line in outcome:
            print(f"OUTCOME {p}: {line}")
        for line in other:
            print(f"other   {p}: {line}")
    print(f"{len(base)} photos: {n_outcome} with outcome differences, {n_other} with other differences")
    return 1 if n_outcome or n_other else 0


if __name__ == "__main__":
    sys.exit(main())
