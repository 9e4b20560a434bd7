"""Coverage-guided fuzzing (atheris, libFuzzer) of one target in tests/fuzz/targets.py.

    python tests/fuzz/fuzz.py TARGET [CORPUS_DIR ...] [libFuzzer flags, e.g. -max_total_time=60]

TARGET is reader, verifier, payload, export, template or config. A crash (any exception the entry point does
not promise) stops the run with exit status 1 and leaves the input in -artifact_prefix; it then belongs in
tests/fuzz/crashes/TARGET/ (replayed by tests/test_fuzz.py) with a named test, and a fix. `make fuzz`
runs every target for FUZZ_SECONDS; tests/test_fuzz.py runs each briefly on the committed seed corpus.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["tpskit"]):
    # Imported here so that the code under test is instrumented for coverage (the targets import lazily).
    import tpskit.config
    import tpskit.district.config
    import tpskit.district.tally
    import tpskit.district.verify_cli
    import tpskit.edge.config
    import tpskit.edge.reader.decode
    import tpskit.edge.reader.pipeline
    import tpskit.envelope
    import tpskit.forms  # noqa: F401

from targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: fuzz.py {{{','.join(TARGETS)}}} [corpus dirs] [libFuzzer flags]")
    target = TARGETS[sys.argv[1]]
    if sys.argv[1] == "reader":
        target(b"")  # load the model and templates before the clock starts
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
