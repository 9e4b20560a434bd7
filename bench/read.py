"""Reader benchmark: photos of readable sheets across every camera condition, officers' hands, slips and bad
captures -> false refusals, accuracy, safety, latency, memory.

    .venv/bin/python bench/read.py [--forms 400] [--per-condition 12] [--officer 60] [--slips 40] [--bad 6] [--write-md]

Sets (all generated once into bench-out/read/ and reused; digits from the validation split only, or from
held-out officer writers the model never trained on):
- `mixed`: every condition of the camera (tpskit/sheets/camera.py CONDITIONS) and the pen drawn at the
  severity, `--forms` photos per severity over both templates; every one a sheet a person reads easily;
- `condition`: one condition at normal or hard, everything else clean, `--per-condition` photos each;
- `officer`: held-out officer writers (tpskit/sheets/officer_digits.py) in their own pens, `--officer` sheets at
  each severity (the same writers), the camera at that severity;
- `slips`: sheets whose written numbers break a check (the officer added up wrongly): never `ok`;
- `bad`: every bad capture, each must be refused with its own reason, never `ok`.

Per row: false refusals (a readable sheet refused), fields correct (every field of a refused sheet counts
as not read), silent errors (a wrong value not sent to review), review rate, forms ok with no human help,
read time. Debug images of every false refusal go to bench-out/read/false-refusals/. Reading runs in
process on one core (one OpenCV thread, one LiteRT thread). The last line is a key=value summary.
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
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tpskit.progress import each

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out" / "read"
TPS = "3201012001001"
TARGETS = {"false_refusals": {"normal": 1.0, "hard": 3.0}, "fields_correct": {"normal": 99.5, "hard": 98.5},
           "forms_ok": {"normal": 95.0}}


def _conditions() -> tuple[str, ...]:
    from tpskit.sheets.camera import CONDITIONS

    return (*CONDITIONS, "pen")


def _job_path(kind: str, severity: str, condition: str, code: str, i: int) -> Path:
    return OUT / kind / severity / condition / f"{code}_{i:04d}.jpg"


def _generate_one(job: tuple[str, str, str, str, int, int]) -> None:
    """One readable photo: kind mixed|condition|officer|slips."""
    kind, severity, condition, code, i, seed = job
    path = _job_path(kind, severity, condition, code, i)
    if path.exists() and path.with_suffix(".json").exists():
        return
    from tpskit.forms import load_templates
    from tpskit.sheets.camera import photograph_with_truth
    from tpskit.sheets.digits_data import load_validation_digits
    from tpskit.sheets.fill import fill_sheet, random_result, sample_pen

    t = load_templates()[code]
    rng = np.random.default_rng([seed, i, sum(map(ord, kind + severity + condition + code))])
    values = random_result(t, rng)
    if kind == "slips":  # change one field of one equality by 1-25, keeping it writable
        checks = [c for c in t.checks if c.relation == "equals"]
        while True:
            c = checks[int(rng.integers(len(checks)))]
            name = c.fields[int(rng.integers(len(c.fields)))]
            v = values[name] + int(rng.choice([-1, 1]) * rng.integers(1, 26))
            if 0 <= v <= t.field_map[name].capacity:
                values[name] = v
                break
    hand_sev = severity if kind in ("mixed", "officer") else "normal"
    pen_sev = severity if kind == "mixed" or condition == "pen" else "clean"
    if kind == "officer":
        from tpskit.sheets.officer_digits import held_out_hand

        h = held_out_hand(seed ^ (i * 7919 + sum(map(ord, code))))
        sheet = fill_sheet(t, TPS, values, rng, h.digits(per_class=6), hand_sev, style=h.ink_style(rng, hand_sev))
    else:
        sheet = fill_sheet(t, TPS, values, rng, load_validation_digits(), hand_sev, pen=sample_pen(rng, pen_sev))
    cam_sev = "normal" if kind == "slips" else severity
    only = condition if kind == "condition" and condition != "pen" else None
    if kind == "condition" and condition == "pen":
        cam_sev = "clean"
    photo = photograph_with_truth(sheet.page, rng, cam_sev, only=only, markers_mm=sheet.markers_mm)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(photo.jpeg)
    shot = {k: v for k, v in asdict(photo.shot).items()}
    path.with_suffix(".json").write_text(json.dumps({"values": sheet.values, "fields": sheet.truth["fields"],
                                                     "shot": shot}, default=float))


def _generate_bad(job: tuple[str, str, int, int]) -> None:
    reason, code, i, seed = job
    path = OUT / "bad" / f"{reason}_{code}_{i:03d}.jpg"
    if path.exists():
        return
    from tpskit.forms import load_templates
    from tpskit.sheets.bad_captures import BAD_CAPTURES
    from tpskit.sheets.digits_data import load_validation_digits
    from tpskit.sheets.fill import fill_sheet, random_result

    t = load_templates()[code]
    rng = np.random.default_rng([seed, i, 99, sum(map(ord, code + reason))])
    sheet = fill_sheet(t, TPS, random_result(t, rng), rng, load_validation_digits(), "normal")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BAD_CAPTURES[reason](sheet, rng, severity="normal"))


def plan(forms: int, per_condition: int, officer: int, slips: int, bad: int, seed: int
         ) -> tuple[list[tuple[str, str, str, str, int, int]], list[tuple[str, str, int, int]]]:
    from tpskit.forms import load_templates
    from tpskit.sheets.bad_captures import BAD_CAPTURES

    codes = sorted(load_templates())
    jobs: list[tuple[str, str, str, str, int, int]] = []
    for sev in ("normal", "hard"):
        jobs += [("mixed", sev, "all", c, i, seed) for i in range(forms // len(codes)) for c in codes]
    for cond in _conditions():
        for sev in ("normal", "hard"):
            jobs += [("condition", sev, cond, c, i, seed) for i in range(per_condition // len(codes)) for c in codes]
    for sev in ("normal", "hard"):  # the same writers at both severities
        jobs += [("officer", sev, "held_out", c, i, seed) for i in range(officer // len(codes)) for c in codes]
    jobs += [("slips", "normal", "slip", c, i, seed) for i in range(slips // len(codes)) for c in codes]
    bad_jobs = [(r, c, i, seed) for r in BAD_CAPTURES for i in range(max(1, bad // len(codes))) for c in codes]
    return jobs, bad_jobs


def generate(jobs: list, bad_jobs: list, workers: int) -> None:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(each(pool.map(_generate_one, jobs, chunksize=4), len(jobs), "generating photos"))
        list(each(pool.map(_generate_bad, bad_jobs, chunksize=2), len(bad_jobs), "generating bad captures"))


def _pct(a: float, b: float) -> float:
    return 100.0 * a / b if b else 0.0


def _row() -> dict:
    return dict(photos=0, refused=0, reasons={}, fields=0, correct=0, silent=0, review=0, resolved=0, forms_ok=0,
                times=[], cpu=[], officer_boxes=0, officer_boxes_right=0, gate={})


def run(jobs: list, bad_jobs: list) -> dict:
    import cv2

    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from tpskit.edge.reader.digit_model import load_digit_model
    from tpskit.edge.reader.pipeline import ReadOptions, read_sheet
    from tpskit.forms import load_templates

    templates = load_templates()
    model = load_digit_model()
    rows: dict[tuple[str, str, str], dict] = {}
    stages: dict[str, list[float]] = {}
    refused_dir = OUT / "false-refusals"
    refused_dir.mkdir(parents=True, exist_ok=True)
    for old in refused_dir.glob("*.png"):
        old.unlink()
    for kind, sev, cond, code, i, _ in each(jobs, len(jobs), "reading photos"):
        p = _job_path(kind, sev, cond, code, i)
        truth = json.loads(p.with_suffix(".json").read_text())
        data = p.read_bytes()
        t0, c0 = time.perf_counter(), time.process_time()
        r = read_sheet(data, templates, model, ReadOptions(expected_tps=TPS), photo=p.name)
        ms, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
        s = rows.setdefault((kind, cond, sev), _row())
        s["photos"] += 1
        s["times"].append(ms)
        s["cpu"].append(cpu)
        for k, v in r.gate.items():
            s["gate"].setdefault(k, []).append(v)
        if kind == "mixed" and sev == "normal":
            for k, v in r.timings_ms.items():
                stages.setdefault(k, []).append(v)
        if r.status == "rejected":
            s["refused"] += 1
            s["reasons"][r.reason] = s["reasons"].get(r.reason, 0) + 1
            s["fields"] += len(truth["values"])
            name = f"{kind}-{sev}-{cond}-{p.stem}"

            def sink(_n: str, img: np.ndarray, name: str = name) -> None:
                cv2.imwrite(str(refused_dir / f"{name}.png"), img)

            read_sheet(data, templates, model, ReadOptions(expected_tps=TPS, debug=sink))
            print(f"FALSE REFUSAL {name}: {r.reason} {r.gate}", file=sys.stderr)
            continue
        s["forms_ok"] += r.status == "ok"
        for name, want in truth["values"].items():
            f = r.fields[name]
            s["fields"] += 1
            s["correct"] += f.value == want
            s["review"] += f.status == "review"
            s["resolved"] += f.status == "resolved_by_checks"
            if f.status != "review" and f.value != want and kind != "slips":
                s["silent"] += 1
                print(f"SILENT ERROR {p}: {name} read {f.value} ({f.status}), truth {want}", file=sys.stderr)
            if kind == "officer":
                for box, tb in zip(f.boxes, truth["fields"][name]["boxes"], strict=True):
                    if tb["digit"] is not None:
                        s["officer_boxes"] += 1
                        s["officer_boxes_right"] += box.digit == tb["digit"]
        if kind == "slips" and r.status == "ok":
            s["silent"] += 1
            print(f"SILENT ERROR {p}: an officer's slip reported ok", file=sys.stderr)

    from tpskit.sheets.bad_captures import BAD_CAPTURES

    bad: dict[str, dict] = {}
    for reason in each(BAD_CAPTURES, len(BAD_CAPTURES), "reading bad captures"):
        b = bad.setdefault(reason, dict(n=0, right=0, ok=0, seen={}))
        for r_, code, i, _ in bad_jobs:
            if r_ != reason:
                continue
            p = OUT / "bad" / f"{reason}_{code}_{i:03d}.jpg"
            r = read_sheet(p.read_bytes(), templates, model, ReadOptions(expected_tps=TPS))
            b["n"] += 1
            b["right"] += r.status == "rejected" and r.reason == reason
            b["ok"] += r.status == "ok"
            key = r.reason or r.status
            b["seen"][key] = b["seen"].get(key, 0) + 1
    return {"rows": rows, "bad": bad, "stages": stages}


def latency(photos: list[Path], repeats: int) -> dict:
    """CPU time of `read_sheet` per photo, the least of `repeats` reads of each (the machine is shared: other
    processes only ever add time, through the caches and the other hyperthread, so the least of a few reads
    is the nearest to a quiet machine), with the load average meanwhile; one OpenCV thread, one core."""
    import cv2

    cv2.setNumThreads(1)
    from tpskit.edge.reader.digit_model import load_digit_model
    from tpskit.edge.reader.pipeline import ReadOptions, read_sheet
    from tpskit.forms import load_templates

    templates, model = load_templates(), load_digit_model()
    loads = [os.getloadavg()[0]]
    best, first = [], []
    for p in each(photos, len(photos), "timing reads"):
        data = p.read_bytes()
        cpu = []
        for _ in range(repeats):
            c0 = time.process_time()
            read_sheet(data, templates, model, ReadOptions(expected_tps=TPS))
            cpu.append((time.process_time() - c0) * 1000)
        first.append(cpu[0])
        best.append(min(cpu))
        loads.append(os.getloadavg()[0])
    return dict(photos=len(photos), repeats=repeats, best=best, first=first, load=(min(loads), max(loads)))


def _sheet_px_per_mm(shot: dict) -> float:
    """Frame pixels per page mm, roughly: the sheet's long side (297 mm) over the fill of the frame's long side."""
    return shot["fill"] * max(shot["size"]) / 297.0


#: Started by a small process of its own: Linux records in a process's peak RSS the memory of the process it
#: was forked from, as it was at the exec (started straight from this benchmark, holding its model and
#: photos, `tpskit read` measured 188 MB where it peaks at about 107).
_RSS_HELPER = ("import os, subprocess, sys\n"
               "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
               "print(os.wait4(p.pid, 0)[2].ru_maxrss)")


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (root only; False when not allowed).

    The libraries' pages a process maps count in its RSS, and how many a fault maps depends on the page
    cache: on Linux 6.18 with ext4, right after pip has written OpenCV's 70 MB library, its cached pages come
    in large folios and the same `tpskit read` peaks 35 MB higher (120 instead of 84 MB; all of the
    difference clean, shared file pages the kernel takes back under pressure) than with the library read
    from disk, as after a boot."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def peak_rss_mb(photos: list[Path]) -> float:
    """Peak RSS of one `tpskit read` process on a few photos (that child's own ru_maxrss, from a small parent)."""
    exe = Path(sys.executable).parent / "tpskit"
    out = subprocess.run([sys.executable, "-c", _RSS_HELPER, str(exe), "read", "--json", *map(str, photos)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024.0


def markdown(report: dict, rss: dict[str, float], model_kb: float, args: argparse.Namespace) -> str:
    rows = report["rows"]
    lines = [f"Generated photos (8 and 12 MP, landscape and portrait; digits from the validation split or held-out "
             f"officer writers): {args.forms} per severity in the mixed set, {args.per_condition} per condition and "
             f"severity, {args.officer} officer-hand sheets, {args.slips} slip sheets, both templates; reading on "
             "one core. Every photo in these rows is a sheet a person reads easily: any refusal is a false refusal.",
             "",
             "| set | condition | severity | photos | false refusals | fields correct | silent errors | review "
             "| resolved by checks | forms ok unaided | read CPU median / p95 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {"mixed": 0, "condition": 1, "officer": 2, "slips": 3}
    for (kind, cond, sev), s in sorted(rows.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2])):
        ref = f"{s['refused']} ({_pct(s['refused'], s['photos']):.1f} %)"
        if s["reasons"]:
            ref += ": " + ", ".join(f"{k} {v}" for k, v in sorted(s["reasons"].items()))
        ok = "-" if kind == "slips" else f"{_pct(s['forms_ok'], s['photos']):.1f} %"
        silent = f"{s['silent']}" + (" slips ok" if kind == "slips" else "")
        cpu = s["cpu"]
        lines.append(f"| {kind} | {cond} | {sev} | {s['photos']} | {ref} | "
                     f"{_pct(s['correct'], s['fields']):.2f} % | {silent} | {_pct(s['review'], s['fields']):.2f} % | "
                     f"{_pct(s['resolved'], s['fields']):.2f} % | {ok} | "
                     f"{statistics.median(cpu):.0f} / {np.percentile(cpu, 95):.0f} |")
    offs = sorted((sev, s) for (k, _, sev), s in rows.items() if k == "officer" and s["officer_boxes"])
    if offs:
        lines += ["", "Held-out officer writers, their written digits read right box by box: " + "; ".join(
            f"{sev} {_pct(s['officer_boxes_right'], s['officer_boxes']):.2f} % ({s['officer_boxes']} boxes)"
            for sev, s in offs) + "."]
    from tpskit.edge.reader import quality as q

    lines += ["", "What the gate measured on these readable photos (worst value in each set; thresholds in "
              "edge/reader/quality.py): the margin between the field and a refusal.", "",
              f"| set | severity | lowest line contrast (>= {q.MIN_LINE_CONTRAST:g}) | widest lines (blurriest tenth "
              f"of the boxes), mm (<= {q.MAX_LINE_WIDTH_MM:g}) | most faded stretches in a box (<= "
              f"{q.GLARE_MAX_FADED:g}) | smallest px/mm (>= {q.MIN_FULLRES_PX_PER_MM:g}) | grid error under the "
              "markers' homography, mm: median / max | after refitting on the grid, max |",
              "|---|---|---|---|---|---|---|---|"]
    for (kind, _cond, sev), s in sorted(rows.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2])):
        if kind not in ("mixed", "officer"):
            continue
        g = s["gate"]

        def worst(key: str, fn, fmt: str = "{:.3g}", g: dict = g) -> str:
            v = [x for x in g.get(key, []) if x == x]
            return fmt.format(fn(v)) if v else "-"

        lines.append(f"| {kind} | {sev} | {worst('line_contrast', min, '{:.1f}')} "
                     f"| {worst('line_width', max, '{:.2f}')} "
                     f"| {worst('faded_line_stretches', max, '{:.0f}')} | {worst('px/mm', min, '{:.1f}')} "
                     f"| {worst('grid_error_markers_mm', statistics.median, '{:.2f}')} / "
                     f"{worst('grid_error_markers_mm', max, '{:.2f}')} | {worst('grid_error_mm', max, '{:.2f}')} |")
    lines += ["", "Per stage (mixed, normal), ms:", "", "| stage | median | p95 |", "|---|---|---|"]
    for k, v in report["stages"].items():
        lines.append(f"| {k} | {statistics.median(v):.2f} | {np.percentile(v, 95):.2f} |")
    lines += ["", "Bad captures (each must be refused with its own reason, never ok):", "",
              "| capture | photos | refused with the right reason | read ok | outcomes |", "|---|---|---|---|---|"]
    for reason, b in report["bad"].items():
        lines.append(f"| {reason} | {b['n']} | {b['right']} | {b['ok']} | "
                     f"{', '.join(f'{k}: {v}' for k, v in sorted(b['seen'].items()))} |")
    lat = report.get("latency")
    if lat:
        lines += ["", f"Latency, 12 MP photos ({lat['photos']} of the mixed normal set, each read {lat['repeats']} "
                      f"times in one process on one pinned core, CPU time of `read_sheet`; load average "
                      f"{lat['load'][0]:.1f}-{lat['load'][1]:.1f} on 2 cores meanwhile): median of each photo's "
                      f"least {statistics.median(lat['best']):.1f} ms (p95 {np.percentile(lat['best'], 95):.1f}), "
                      f"of its first read {statistics.median(lat['first']):.1f} ms. The rows above give CPU time "
                      "per read as the sweep went, every sensor size, on the same loaded machine."]
    lines += ["", f"Peak RSS of `tpskit read` (one process each): {rss['normal']:.0f} MB on 5 photos of the mixed "
                  f"normal set, {rss['small']:.0f} MB on the 5 smallest sheets of the hard set (each decoded "
                  f"again at full size) and 2 refused photos. Model: {model_kb:.0f} KB."]
    if "normal_cold" in rss:
        lines[-1] += (f" With the page cache emptied first (the libraries read from disk, as after a boot): "
                      f"{rss['normal_cold']:.0f} and {rss['small_cold']:.0f} MB; the difference is clean file pages "
                      "of the libraries (see `drop_page_cache` in bench/read.py).")
    return "\n".join(lines)


def summary(report: dict, rss: dict[str, float]) -> str:
    rows = report["rows"]
    parts = []
    for sev in ("normal", "hard"):
        s = rows.get(("mixed", "all", sev))
        if s:
            parts.append(f"{sev}_false_refusals_pct={_pct(s['refused'], s['photos']):.2f} "
                         f"{sev}_fields_correct_pct={_pct(s['correct'], s['fields']):.2f} "
                         f"{sev}_forms_ok_pct={_pct(s['forms_ok'], s['photos']):.1f}")
    silent = sum(s["silent"] for s in rows.values())
    bad_ok = sum(b["ok"] for b in report["bad"].values())
    bad_wrong = sum(b["n"] - b["right"] for b in report["bad"].values())
    lat = report.get("latency")
    med = statistics.median(lat["best"]) if lat else float("nan")
    cold = max(rss.get("normal_cold", rss["normal"]), rss.get("small_cold", rss["small"]))
    return " ".join(parts) + (f" silent_errors={silent} bad_read_ok={bad_ok} bad_wrong_reason={bad_wrong} "
                              f"read_cpu_median_ms_12mp={med:.1f} peak_rss_mb={cold:.0f} "
                              f"peak_rss_warm_mb={max(rss['normal'], rss['small']):.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forms", type=int, default=400, help="photos per severity in the mixed set")
    ap.add_argument("--per-condition", type=int, default=12, help="photos per condition and severity")
    ap.add_argument("--officer", type=int, default=60, help="sheets written by held-out officer writers")
    ap.add_argument("--slips", type=int, default=40, help="sheets with an officer's arithmetic slip")
    ap.add_argument("--bad", type=int, default=6, help="photos per bad-capture kind")
    ap.add_argument("--timing", type=int, default=40, help="12 MP photos of the mixed normal set timed for latency")
    ap.add_argument("--repeats", type=int, default=5, help="reads of each timed photo (the least CPU time counts)")
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes generating photos")
    ap.add_argument("--write-md", action="store_true", help="replace the reader section of BENCHMARKS.md")
    ap.add_argument("--drop-caches", action="store_true",
                    help="also measure peak RSS with the page cache emptied first (root only; see drop_page_cache)")
    a = ap.parse_args()
    jobs, bad_jobs = plan(a.forms, a.per_condition, a.officer, a.slips, a.bad, a.seed)
    t0 = time.time()
    generate(jobs, bad_jobs, a.workers)
    print(f"{len(jobs) + len(bad_jobs)} photos ready in {time.time() - t0:.0f} s", file=sys.stderr)
    report = run(jobs, bad_jobs)
    from tpskit.models import DIGITS_MODEL

    normal = [_job_path(*j[:5]) for j in jobs if j[0] == "mixed" and j[1] == "normal"]
    twelve = [p for p in normal if max(json.loads(p.with_suffix(".json").read_text())["shot"]["size"]) == 4056]
    if a.timing:
        report["latency"] = latency(twelve[: a.timing], a.repeats)
    hard = [_job_path(*j[:5]) for j in jobs if j[0] == "mixed" and j[1] == "hard"]
    smallest = sorted(hard, key=lambda p: _sheet_px_per_mm(json.loads(p.with_suffix(".json").read_text())["shot"]))
    refused = sorted((OUT / "bad").glob("out_of_focus_*.jpg"))[:1] + sorted((OUT / "bad").glob("glare_*.jpg"))[:1]
    rss = {"normal": peak_rss_mb(normal[:5]), "small": peak_rss_mb(smallest[:5] + refused)}
    if a.drop_caches and drop_page_cache():
        rss["normal_cold"] = peak_rss_mb(normal[:5])
        drop_page_cache()
        rss["small_cold"] = peak_rss_mb(smallest[:5] + refused)
    model_kb = DIGITS_MODEL.stat().st_size / 1024
    line = summary(report, rss)
    md = markdown(report, rss, model_kb, a) + f"\n\n`{line}`"
    print(md)
    if a.write_md:
        write_section(md)
    print(line)
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
