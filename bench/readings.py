"""A confirmed reading of the PPWP form whose numbers satisfy every check, varied by `n`: what the
benchmarks' simulated kits sign (the reader is measured apart, in bench/read.py)."""

from __future__ import annotations

from typing import Any


def reading_for(tps: str, n: int) -> Any:
    """A `tpskit.edge.reading.Reading` (imported here: the benches start processes that need not load it)."""
    from tpskit.edge.reading import Reading

    a, b, c = 40 + n % 50, 30 + n % 20, 20
    sah, total = a + b + c, a + b + c + 2
    dpt = 200
    values = {"dpt": dpt, "dptb": 2, "dpk": 2, "pemilih_total": dpt + 4, "pengguna_dpt": total - 2,
              "pengguna_dptb": 1, "pengguna_dpk": 1, "pengguna_total": total, "ss_diterima": dpt + 10,
              "ss_rusak": 1, "ss_sisa": dpt + 10 - 1 - total, "ss_digunakan": total, "paslon_01": a,
              "paslon_02": b, "paslon_03": c, "suara_sah": sah, "suara_tidak_sah": 2, "suara_total": total}
    return Reading.from_dict({
        "template": "c-hasil-ppwp-2024", "form_code": "PPWP", "tps": tps, "status": "ok", "checks": [],
        "fields": {k: {"value": v, "confidence": 0.999, "status": "ok"} for k, v in values.items()}})
