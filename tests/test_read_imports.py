"""`tpskit read` holds only what reading needs: its peak memory is a target (issue 8, <= 120 MB), and
pydantic (the configuration's and the envelopes' models) cost it 16 MB of 137 when templates were
pydantic models and the shared command helpers imported the configuration base; hashlib's OpenSSL
(`_hashlib`, for a SHA-256 of the model nobody read) cost it another 9-13 MB of peak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PHOTO = Path(__file__).parent / "data" / "field-captures" / "normal-00.jpg"

_PROBE = """
import json, sys
from tpskit.cli import main
rc = main(["read", "--json", sys.argv[1]])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pydantic", "pydantic_core", "PIL", "paho", "cryptography",
                                                         "jinja2", "sqlalchemy", "nats", "starlette", "joserfc",
                                                         "_hashlib", "_ssl"})
print(json.dumps({"rc": rc, "heavy": heavy, "config": "tpskit.config" in sys.modules}), file=sys.stderr)
"""


def test_tpskit_read_imports_neither_pydantic_nor_openssl_nor_the_configuration_nor_any_network_stack():
    out = subprocess.run([sys.executable, "-c", _PROBE, str(PHOTO)], capture_output=True, text=True, timeout=120)
    probe = json.loads(out.stderr.strip().splitlines()[-1])
    assert probe == {"rc": 0, "heavy": [], "config": False}
