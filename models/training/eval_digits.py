"""Compare digit models on the card's validation and held-out officer boxes: accuracy, NLL, error tail.

    .venv/bin/python models/training/eval_digits.py models/digits_int8.tflite [OTHER.tflite ...]

Runs on the kit's runtime (LiteRT, no TensorFlow), one thread. What the reader needs from the model
is not only top-1 accuracy: when a box is misread, the true digit must keep a usable probability
(the checks search the top alternatives), and an error must not be near-certain. Per severity:
accuracy, mean NLL, the fraction of errors where p(true) < 1e-3 and < 1e-2, errors with
p(read) > 0.999, and the median time of `predict` on 285 boxes (the reader's batch: 57 boxes x 5
shifted reads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def tail_metrics(probs: np.ndarray, y: np.ndarray) -> dict:
    """The card's figures for one set of (N, 11) probabilities against labels."""
    pred = probs.argmax(axis=1)
    p_true = probs[np.arange(len(y)), y].astype(np.float64)
    wrong = pred != y
    n_err = int(wrong.sum())
    frac = lambda m: round(float(m.sum()) / n_err, 3) if n_err else 0.0  # noqa: E731
    return {
        "n": len(y),
        "accuracy_pct": round(float((~wrong).mean()) * 100, 2),
        "nll": round(float(-np.log(np.maximum(p_true, 1e-12)).mean()), 4),
        "errors": n_err,
        "errors_p_true_below_1e-3": frac(wrong & (p_true < 1e-3)),
        "errors_p_true_below_1e-2": frac(wrong & (p_true < 1e-2)),
        "wrong_with_p_above_0.999": int((wrong & (probs.max(axis=1) > 0.999)).sum()),
        "empty_read_as_digit_p_above_0.99": int(((y == 10) & (pred != 10) & (probs.max(axis=1) > 0.99)).sum()),
    }


def predict_ms(model, x: np.ndarray, n: int = 285, reps: int = 30) -> float:
    """Median wall time of one `predict` on n boxes (the reader's batch)."""
    batch = np.resize(x, (n, 28, 28))
    model.predict(batch)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.predict(batch)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000, 2)


def validation_sets(cache: Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The card's validation boxes (validation digits) and held-out officer boxes, normal and hard."""
    from tpskit.sheets.box_dataset import held_out_officer_boxes, validation_boxes

    sets = {}
    for name, build in (("normal", lambda: validation_boxes("normal")), ("hard", lambda: validation_boxes("hard")),
                        ("officers_normal", lambda: held_out_officer_boxes("normal")),
                        ("officers_hard", lambda: held_out_officer_boxes("hard"))):
        f = cache / f"val-{name}.npz" if cache else None
        if f and f.exists():
            with np.load(f) as d:
                sets[name] = (d["x"], d["y"])
            continue
        sets[name] = build()
        if f:
            f.parent.mkdir(parents=True, exist_ok=True)
            np.savez(f, x=sets[name][0], y=sets[name][1])
    return sets


def per_class_pct(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from tpskit.sheets.box_dataset import CLASSES

    pred = probs.argmax(axis=1)
    return {CLASSES[c]: round(float((pred[y == c] == c).mean()) * 100, 2) for c in range(11) if (y == c).any()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--cache", default="", help="directory to cache the rebuilt validation boxes")
    args = ap.parse_args(argv)
    from tpskit.edge.reader.digit_model import load_digit_model

    sets = validation_sets(Path(args.cache) if args.cache else None)
    report = {}
    for path in args.models:
        model = load_digit_model(path, num_threads=1)
        probs = {sev: model.predict(x) for sev, (x, _) in sets.items()}
        row = {sev: {**tail_metrics(probs[sev], y), "per_class_pct": per_class_pct(probs[sev], y)}
               for sev, (_, y) in sets.items()}
        row["predict_285_ms"] = predict_ms(model, sets["normal"][0])
        row["size_bytes"] = Path(path).stat().st_size
        report[path] = row
        print(json.dumps({path: row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
