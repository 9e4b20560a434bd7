"""Fuzzing that stays: every crash the fuzzers ever found is replayed (and named below), and each fuzzer
runs briefly on its committed seed corpus (`make fuzz` runs them for longer; hours in BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
from targets import CORPUS, CRASHES, HERE, TARGETS

from tpskit.config import ConfigError
from tpskit.district.config import load_district_config
from tpskit.edge.config import load_kit_config
from tpskit.forms import TemplateError, load_template

#: Seconds each fuzzer runs in the suite (libFuzzer's -max_total_time), after its start-up.
SUITE_SECONDS = 3

CRASH_FILES = sorted(p for p in CRASHES.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", CRASH_FILES, ids=[f"{p.parent.name}/{p.name}" for p in CRASH_FILES])
def test_every_input_that_once_crashed_a_fuzz_target_is_now_a_clean_refusal(path):
    TARGETS[path.parent.name](path.read_bytes())


def test_a_grid_whose_fields_were_found_without_a_single_box_is_not_followed_along_a_curl():
    """Found by the reader fuzzer: a corrupt JPEG whose combs matched but no box did; the curl search took
    the nearest found box from an empty list (crashes/reader/crash-cb2d6c22...)."""
    from tpskit.edge.reader.grid import FieldFit, _follow_curl
    from tpskit.forms import load_templates

    t = load_templates()["KWK"]
    fits = {f.name: FieldFit(name=f.name, x0_mm=0.0, y0_mm=0.0, strip=None, boxes=[], dx_mm=0.0, dy_mm=0.0,
                             found=i == 0) for i, f in enumerate(t.fields)}
    _follow_curl(None, None, t, {}, fits)  # nothing to follow from: returns without searching
    assert [f.found for f in fits.values()].count(True) == 1


def test_a_template_file_that_is_not_utf8_is_a_template_error_not_a_traceback(tmp_path):
    """Found by the template fuzzer: UnicodeDecodeError escaped load_template."""
    bad = tmp_path / "t.json"
    bad.write_bytes((CRASHES / "template" / "not-utf8.json").read_bytes())
    with pytest.raises(TemplateError, match="not UTF-8"):
        load_template(bad)


def test_a_config_file_that_is_not_utf8_is_a_config_error_naming_the_fix(tmp_path):
    """Found by the config fuzzer: UnicodeDecodeError escaped the config loaders."""
    bad = tmp_path / "kit.toml"
    bad.write_bytes((CRASHES / "config" / "not-utf8.toml").read_bytes())
    with pytest.raises(ConfigError, match="save the file as UTF-8"):
        load_kit_config(bad)


def test_a_template_nested_thousands_deep_is_a_template_error_not_a_recursion_error(tmp_path):
    """Found by the template fuzzer in its first minute (f016b1a fixed it, without a test until now)."""
    bad = tmp_path / "t.json"
    bad.write_bytes((CRASHES / "template" / "nested-too-deep.json").read_bytes())
    with pytest.raises(TemplateError, match="nested too deep"):
        load_template(bad)


def test_a_config_file_nested_too_deep_is_a_config_error_not_a_recursion_error(tmp_path):
    """Found by probing the config fuzz target with deep nesting: tomllib recursed past Python's limit and
    the RecursionError escaped both loaders (a value nested 600 deep is enough)."""
    bad = tmp_path / "kit.toml"
    bad.write_bytes((CRASHES / "config" / "nested-too-deep.toml").read_bytes())
    for load in (load_kit_config, load_district_config):
        with pytest.raises(ConfigError, match="nested too deep"):
            load(bad)


def test_verify_on_an_export_whose_first_line_is_nested_too_deep_reports_it_and_does_not_raise(tmp_path, capsys):
    """Found while adding the export fuzz target: the export's first line, read as its header, raised
    RecursionError out of `tpskit verify` (a traceback, no verdict)."""
    from tpskit.cli import main

    bad = tmp_path / "export.jsonl"
    bad.write_bytes((CRASHES / "export" / "first-line-nested-too-deep.jsonl").read_bytes())
    assert main(["verify", str(bad), "--ca", str(HERE / "ca.pem"), "--table"]) == 1
    assert "PROBLEM: header: the first line is JSON nested too deep" in capsys.readouterr().out


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzzer_runs_on_its_seed_corpus_without_a_crash(target, tmp_path):
    work, crashes = tmp_path / "corpus", tmp_path / "crashes"
    work.mkdir()
    crashes.mkdir()
    run = subprocess.run([sys.executable, str(HERE / "fuzz.py"), target, str(work), str(CORPUS / target),
                          f"-max_total_time={SUITE_SECONDS}", f"-artifact_prefix={crashes}/", "-print_final_stats=1"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done" in run.stderr and not list(crashes.iterdir())
