"""Reader benchmark: generated photos per severity and template -> accuracy, safety, latency, memory.

    .venv/bin/python bench/read.py [--forms 100] [--bad 4] [--write-md]

Photos are generated once into bench-out/read/ (validation-split digits only) and reused. Reading runs
in-process on one core (one OpenCV thread, one LiteRT thread). The last line is a key=value summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "read"
TPS = "3201012001001"
SEVERITIES = ("clean", "normal", "hard")


def _generate_one(args: tuple[str, str, int, int]) -> None:
    code, severity, i, seed = args
    from tpskit.forms import load_templates
    from tpskit.sheets.camera import photograph
    from tpskit.sheets.digits_data import load_validation_digits
    from tpskit.sheets.fill import fill_sheet, random_result

    path = OUT / severity / f"{code}_{i:04d}.jpg"
    if path.exists() and path.with_suffix(".json").exists():
        return
    t = load_templates()[code]
    digits = load_validation_digits()
    rng = np.random.default_rng([seed, i, SEVERITIES.index(severity), sum(map(ord, code))])
    sheet = fill_sheet(t, TPS, random_result(t, rng), rng, digits, severity)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(photograph(sheet.page, rng, severity))
    path.with_suffix(".json").write_text(json.dumps(sheet.truth))


def _generate_bad(args: tuple[str, str, int, int]) -> None:
    code, reason, i, seed = args
    from tpskit.forms import load_templates
    from tpskit.sheets.bad_captures import BAD_CAPTURES
    from tpskit.sheets.digits_data import load_validation_digits
    from tpskit.sheets.fill import fill_sheet, random_result

    path = OUT / "bad" / f"{reason}_{code}_{i:03d}.jpg"
    if path.exists():
        return
    t = load_templates()[code]
    digits = load_validation_digits()
    rng = np.random.default_rng([seed, i, 99, sum(map(ord, code + reason))])
    sheet = fill_sheet(t, TPS, random_result(t, rng), rng, digits, "normal")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BAD_CAPTURES[reason](sheet, rng, severity="normal"))


def _generate_slip(args: tuple[str, int, int]) -> None:
    """A sheet whose written numbers break one equality check (the officer added up wrongly)."""
    code, i, seed = args
    from tpskit.forms import load_templates
    from tpskit.sheets.camera import photograph
    from tpskit.sheets.digits_data import load_validation_digits
    from tpskit.sheets.fill import fill_sheet, random_result

    path = OUT / "slips" / f"{code}_{i:04d}.jpg"
    if path.exists():
        return
    t = load_templates()[code]
    digits = load_validation_digits()
    rng = np.random.default_rng([seed, i, 77, sum(map(ord, code))])
    values = random_result(t, rng)
    checks = [c for c in t.checks if c.relation == "equals"]
    while True:  # change one field of one check by 1-25, keeping it writable
        c = checks[int(rng.integers(len(checks)))]
        name = c.fields[int(rng.integers(len(c.fields)))]
        v = values[name] + int(rng.choice([-1, 1]) * rng.integers(1, 26))
        if 0 <= v <= t.field_map[name].capacity:
            values[name] = v
            break
    sheet = fill_sheet(t, TPS, values, rng, digits, "normal")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(photograph(sheet.page, rng, "normal"))
    path.with_suffix(".json").write_text(json.dumps(sheet.truth))


def generate(forms: int, bad: int, seed: int, severities: tuple[str, ...], slips: int = 0) -> None:
    from tpskit.forms import load_templates
    from tpskit.sheets.bad_captures import BAD_CAPTURES

    codes = sorted(load_templates())
    jobs = [(c, s, i, seed) for s in severities for c in codes for i in range(forms // len(codes))]
    bad_jobs = [(c, r, i, seed) for r in BAD_CAPTURES for c in codes for i in range(bad // len(codes) or 1)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_generate_one, jobs, chunksize=4))
        list(pool.map(_generate_bad, bad_jobs, chunksize=2))
        list(pool.map(_generate_slip, [(c, i, seed) for c in codes for i in range(slips // len(codes))],
                      chunksize=4))


def _pct(a: float, b: float) -> float:
    return 100.0 * a / b if b else 0.0


def run(forms: int, bad: int, seed: int, severities: tuple[str, ...]) -> dict[str, dict]:
    import cv2

    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from tpskit.edge.reader.digit_model import load_digit_model
    from tpskit.edge.reader.pipeline import ReadOptions, read_sheet
    from tpskit.forms import load_templates

    templates = load_templates()
    model = load_digit_model()
    codes = sorted(templates)
    report: dict[str, dict] = {}
    for sev in severities:
        photos = [OUT / sev / f"{c}_{i:04d}.jpg" for c in codes for i in range(forms // len(codes))]
        s = dict(forms=0, fields=0, correct=0, silent=0, review=0, resolved=0, forms_ok=0, rejected=0,
                 bubble_fields=0, bubble_agree=0, truth_agree=0, max_wrong_conf=0.0)
        stages: dict[str, list[float]] = {}
        totals: list[float] = []
        for p in photos:
            truth = json.loads(p.with_suffix(".json").read_text())
            data = p.read_bytes()
            t0 = time.perf_counter()
            r = read_sheet(data, templates, model, ReadOptions(expected_tps=TPS), photo=p.name)
            totals.append((time.perf_counter() - t0) * 1000)
            for k, v in r.timings_ms.items():
                stages.setdefault(k, []).append(v)
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
                s["resolved"] += f.status == "resolved_by_checks"
                if f.status != "review" and f.value != want:
                    s["silent"] += 1
                    print(f"SILENT ERROR {p.name} {name}: read {f.value} ({f.status}), truth {want}",
                          file=sys.stderr)
                if f.ocr_value != want:
                    s["max_wrong_conf"] = max(s["max_wrong_conf"], f.ocr_confidence)
                if f.bubbles is not None:
                    from tpskit.sheets.fill import bubbles_agree

                    s["bubble_fields"] += 1
                    s["bubble_agree"] += f.bubbles == "agree"
                    s["truth_agree"] += all(bubbles_agree(row) or row["written"] is None
                                            for row in truth["fields"][name]["bubbles"])
        s["latency"] = {k: (statistics.median(v), float(np.percentile(v, 95))) for k, v in stages.items()}
        s["total"] = (statistics.median(totals), float(np.percentile(totals, 95)))
        report[sev] = s

    from tpskit.sheets.bad_captures import BAD_CAPTURES

    bad_report: dict[str, dict] = {}
    for reason in BAD_CAPTURES:
        photos = sorted((OUT / "bad").glob(f"{reason}_*.jpg"))
        right = ok = 0
        seen: dict[str, int] = {}
        for p in photos:
            r = read_sheet(p.read_bytes(), templates, model, ReadOptions(expected_tps=TPS))
            right += r.status == "rejected" and r.reason == reason
            ok += r.status == "ok"
            key = r.reason or r.status
            seen[key] = seen.get(key, 0) + 1
        bad_report[reason] = dict(n=len(photos), right=right, ok=ok, seen=seen)
    report["_bad"] = bad_report

    slip_photos = sorted((OUT / "slips").glob("*.jpg"))
    slip_ok = sum(read_sheet(p.read_bytes(), templates, model, ReadOptions(expected_tps=TPS)).status == "ok"
                  for p in slip_photos)
    report["_slips"] = {"n": len(slip_photos), "ok": slip_ok}
    return report


def peak_rss_mb(photos: list[Path]) -> float:
    """Peak RSS of one `tpskit read` process on a few photos (that child's own ru_maxrss)."""
    exe = Path(sys.executable).parent / "tpskit"
    proc = subprocess.Popen([str(exe), "read", "--json", *map(str, photos)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss / 1024.0


def markdown(report: dict[str, dict], rss: float, model_kb: float, forms: int) -> str:
    lines = [f"Generated photos: {forms} forms per severity, both templates, 4056x3040 JPEG; reading on one core.",
             "",
             "| severity | forms | fields | fields correct | silent errors | review | resolved by checks "
             "| forms auto-ok | rejected | digits/bubbles agree (truth) | read median / p95 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for sev, s in report.items():
        if sev.startswith("_"):
            continue
        lines.append(
            f"| {sev} | {s['forms']} | {s['fields']} | {_pct(s['correct'], s['fields']):.2f} % | {s['silent']} "
            f"| {_pct(s['review'], s['fields']):.2f} % | {_pct(s['resolved'], s['fields']):.2f} % "
            f"| {_pct(s['forms_ok'], s['forms']):.1f} % | {_pct(s['rejected'], s['forms']):.1f} % "
            f"| {_pct(s['bubble_agree'], s['bubble_fields']):.1f} % "
            f"({_pct(s['truth_agree'], s['bubble_fields']):.1f} %) "
            f"| {s['total'][0]:.1f} / {s['total'][1]:.1f} |")
    ref = report.get("normal") or next(v for k, v in report.items() if not k.startswith("_"))
    lines += ["", "Per stage (normal severity), ms:", "", "| stage | median | p95 |", "|---|---|---|"]
    for k, (med, p95) in ref["latency"].items():
        lines.append(f"| {k} | {med:.2f} | {p95:.2f} |")
    lines += ["", "Bad captures (each must be refused with its reason, never ok):", "",
              "| capture | photos | refused with the right reason | read ok | outcomes |", "|---|---|---|---|---|"]
    for reason, b in report["_bad"].items():
        lines.append(f"| {reason} | {b['n']} | {b['right']} | {b['ok']} | "
                     f"{', '.join(f'{k}: {v}' for k, v in sorted(b['seen'].items()))} |")
    sl = report["_slips"]
    lines += ["", f"Officer slips (normal severity; the written numbers break one check by 1-25): "
              f"{sl['n']} sheets, {sl['ok']} reported ok (must be 0: a slip is never balanced away)."]
    lines += ["", f"Peak RSS of `tpskit read`: {rss:.0f} MB. Model: {model_kb:.0f} KB.",
              f"Highest digits-only confidence of a wrong reading (normal): {ref['max_wrong_conf']:.6f}."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forms", type=int, default=200, help="forms per severity (split over the templates)")
    ap.add_argument("--bad", type=int, default=4, help="photos per bad-capture kind")
    ap.add_argument("--slips", type=int, default=100, help="sheets with an officer's arithmetic slip")
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--severities", default=",".join(SEVERITIES))
    ap.add_argument("--write-md", action="store_true", help="replace the reader section of BENCHMARKS.md")
    a = ap.parse_args()
    sevs = tuple(a.severities.split(","))
    t0 = time.time()
    generate(a.forms, a.bad, a.seed, sevs, a.slips)
    print(f"photos ready in {time.time() - t0:.0f} s", file=sys.stderr)
    report = run(a.forms, a.bad, a.seed, sevs)
    from tpskit.models import DIGITS_MODEL

    rss = peak_rss_mb(sorted((OUT / sevs[0]).glob("*.jpg"))[:5])
    model_kb = DIGITS_MODEL.stat().st_size / 1024
    ref = report.get("normal") or report[sevs[0]]
    fields = sum(v["fields"] for k, v in report.items() if not k.startswith("_"))
    silent = sum(v["silent"] for k, v in report.items() if not k.startswith("_")) + report["_slips"]["ok"]
    summary = (f"fields_correct_pct={_pct(ref['correct'], ref['fields']):.2f} silent_errors={silent} "
               f"review_pct={_pct(ref['review'], ref['fields']):.2f} "
               f"forms_auto_ok_pct={_pct(ref['forms_ok'], ref['forms']):.1f} "
               f"read_median_ms={ref['total'][0]:.1f} peak_rss_mb={rss:.0f} model_kb={model_kb:.0f} "
               f"fields_total={fields}")
    md = markdown(report, rss, model_kb, a.forms) + f"\n\n`{summary}`"
    print(md)
    if a.write_md:
        write_section(md)
    print(summary)
    return 0


def write_section(md: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    head = "## Reader (bench/read.py)"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(head)
    if start == -1:
        text = text.rstrip() + f"\n\n{head}\n\n{md}\n"
    else:
        end = text.find("\n## ", start + len(head))
        text = text[:start] + f"{head}\n\n{md}\n" + (text[end:] if end != -1 else "")
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
