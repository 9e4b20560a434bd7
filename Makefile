# tpskit — two commands on a fresh Debian / Raspberry Pi OS machine:
#   make demo   sets everything up and runs the main job
#   make test   sets everything up and runs the test suite
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := mosquitto postgresql nats-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench bench-read system-deps venv clean train fuzz chaos

# System packages the tests need: a real mosquitto, PostgreSQL binaries, Debian's nats-server (tests start their own
# throwaway servers; nothing here uses the machine's running services), the reader's JPEG decoder, and
# Chromium with its WebDriver for the page tests (tests/browser.py; nothing is downloaded at run time).
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing="$$missing nats-server"; \
	$(PY) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	ls /usr/lib/*/libturbojpeg.so.0 >/dev/null 2>&1 || missing="$$missing libturbojpeg0"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# pip shows its progress when a person watches (stdout a terminal, CI unset) and stays quiet otherwise.
# setuptools announces every editable install with an information-only "Editable installation." warning
# (whatever the layout); it is filtered out by its message, and any other warning still shows.
$(STAMP): pyproject.toml | system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@if [ -t 1 ] && [ -z "$$CI" ]; then q=""; echo "installing tpskit and its Python packages into $(VENV)/ (about a minute the first time)"; else q=-q; fi; \
	set -x; \
	$(BIN)/pip install $$q --upgrade pip setuptools wheel && \
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install $$q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	$(BIN)/python -m tpskit.demo

bench: $(STAMP)
	$(BIN)/python bench/read.py

# Retrain the digit model (TensorFlow in its own venv; the kit never needs it). The command is the one
# recorded in models/digits_int8.json ("training.command"); about 80 minutes on 2 busy cores. Handwriting-like
# fonts (Debian packages) are part of the training data; the full digit file comes from ../shared/data/
# or $$TPSKIT_DIGITS_DATA (models/training/digits_split.py).
TRAIN_FONTS := fonts-dkg-handwriting fonts-humor-sans fonts-breip fonts-comic-neue fonts-klee
train:
	dpkg -s $(TRAIN_FONTS) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(TRAIN_FONTS); }
	test -x .venv-train/bin/python || $(PY) -m venv .venv-train
	.venv-train/bin/pip install -q -e '.[train]'
	OMP_NUM_THREADS=2 nice -n 10 .venv-train/bin/python models/training/train_digits.py --seed 1 --members 2 \
	    --variety --copies 14 --epochs 12 --batch 256 --officers 3000 --officer-per-class 2 --officer-fonts 0.1 \
	    --cache .train-cache

# Coverage-guided fuzzing (atheris) of the reader, the envelope verifier (on tokens, and past the signature on
# signed payloads), `tpskit verify` on export files, the template loader and the config loaders,
# FUZZ_SECONDS each, from the committed seed corpus (new inputs go to fuzz-out/, never into the repository).
# A crash stops its target with its input in fuzz-out/crashes/TARGET/: copy it into tests/fuzz/crashes/TARGET/
# (the suite replays it), name a test after it, fix it.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= reader verifier payload export template config
fuzz: $(STAMP)
	@status=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz-out/corpus/$$t fuzz-out/crashes/$$t; \
	  echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  nice -n 10 $(BIN)/python tests/fuzz/fuzz.py $$t fuzz-out/corpus/$$t tests/fuzz/corpus/$$t \
	    -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=fuzz-out/crashes/$$t/ -print_final_stats=1 \
	    2> fuzz-out/$$t.log || status=1; \
	  grep -E "^(Done|stat::number_of_executed_units)" fuzz-out/$$t.log; \
	done; ls fuzz-out/crashes/*/ 2>/dev/null; exit $$status

# The long chaos run (bench/chaos.py): kits delivering while the broker, the district service and kits are
# killed and restarted and the disk fills; prints sent, stored, lost, duplicated (BENCHMARKS.md).
CHAOS_SECONDS ?= 1800
chaos: $(STAMP)
	nice -n 10 $(BIN)/python bench/chaos.py --seconds $(CHAOS_SECONDS) --kits 8 --period 4 --interval 2

clean:
	rm -rf $(VENV) demo-run bench-out fuzz-out test-artifacts *.egg-info
