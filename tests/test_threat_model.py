"""docs/threat-model.md names, for each threat, the test that covers it: every name must be a test that
exists, so that the document cannot drift from the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_threat_model_names_exists():
    text = (ROOT / "docs" / "threat-model.md").read_text()
    rows = [ln for ln in text.splitlines() if re.match(r"\| T\d+ ", ln)]
    assert len(rows) >= 20
    missing = []
    for row in rows:
        current = None
        cited = re.findall(r"`(test_\w+\.py)?::(test_\w+)(?:\[\w+\])?`", row)
        assert cited, f"no test named for: {row[:60]}"
        for file, name in cited:
            current = file or current
            assert current, row
            if not re.search(rf"^def {name}\(", (ROOT / "tests" / current).read_text(), re.M):
                missing.append(f"{current}::{name}")
    assert missing == []
