"""The fuzz targets: each takes bytes and raises only on a defect (anything but the clean refusal the entry
point promises). Shared by the atheris fuzzers (tests/fuzz/fuzz.py), their short runs in the suite and the
replay of every crash ever found (tests/test_fuzz.py)."""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"


@functools.cache
def _reader() -> tuple:
    from tpskit.edge.reader.digit_model import load_digit_model
    from tpskit.forms import load_templates

    return load_templates(), load_digit_model()


def reader(data: bytes) -> None:
    """`tpskit read`'s entry point on photo bytes: a reading or a refusal, never an exception. The inner
    function is called so that a defect shows its traceback (read_sheet would turn it into the refusal
    `reader_error`)."""
    from tpskit.edge.reader import pipeline

    templates, model = _reader()
    pipeline._read_sheet(data, templates, model, None, "fuzz.jpg")


@functools.cache
def _verifier() -> object:
    from tpskit.envelope import Verifier
    from tpskit.trust.certs import load_certs

    return Verifier(load_certs(HERE / "ca.pem"))


def verifier(data: bytes) -> None:
    """The envelope verifier on a token, as the district and `tpskit verify` call it, and the ack parser
    as the kit calls it: VerificationError or a result, nothing else."""
    from tpskit.envelope import VerificationError, parse_ack, verify_result

    v = _verifier()
    with contextlib.suppress(VerificationError):
        verify_result(v, data)  # type: ignore[arg-type]
    with contextlib.suppress(VerificationError):
        parse_ack(v.verify(data, role="district"))  # type: ignore[attr-defined]


@functools.cache
def _kit() -> tuple:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from tpskit.forms import load_templates
    from tpskit.trust.certs import load_certs

    key = load_pem_private_key((HERE / "kit.key").read_bytes(), None)
    return key, load_certs(HERE / "kit.pem"), {t.id: t for t in load_templates().values()}


def payload(data: bytes) -> None:
    """A result payload signed by a kit of the fuzz district, checked as the district checks it: past the
    signature, into strict JSON, the schema's bounds, the identity binding, the time rule and the
    arithmetic. VerificationError or a result, nothing else."""
    from tpskit.envelope import VerificationError, recheck_arithmetic, sign_compact, verify_result

    key, chain, templates = _kit()
    try:
        _, result = verify_result(_verifier(), sign_compact(data, key, chain))  # type: ignore[arg-type]
    except VerificationError:
        return
    template = templates.get(result.template_id)
    if template is not None:
        recheck_arithmetic(result, template)


def export(data: bytes) -> None:
    """`tpskit verify` on a file (an observer's export, or token lines) and its recount: a verdict for every
    line and the header's problem, never an exception."""
    from tpskit.district.verify_cli import recount_export, verify_export

    report = verify_export(data.decode("ascii", errors="replace").splitlines(), HERE / "ca.pem")
    if report.header is not None:
        recount_export(report)


def _as_file(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="tpskit-fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


def _cleanup(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.parent.rmdir()


def template(data: bytes) -> None:
    """The form template loader: a Template or TemplateError."""
    from tpskit.forms import TemplateError, load_template

    path = _as_file(data, "t.json")
    try:
        load_template(path)
    except TemplateError:
        pass
    finally:
        _cleanup(path)


def config(data: bytes) -> None:
    """Both configuration loaders (kit and district): a config or ConfigError naming the problem."""
    from tpskit.config import ConfigError
    from tpskit.district.config import load_district_config
    from tpskit.edge.config import load_kit_config

    path = _as_file(data, "x.toml")
    try:
        for load in (load_kit_config, load_district_config):
            with contextlib.suppress(ConfigError):
                load(path)
    finally:
        _cleanup(path)


TARGETS: dict[str, Callable[[bytes], None]] = {"reader": reader, "verifier": verifier, "payload": payload,
                                                "export": export, "template": template, "config": config}
