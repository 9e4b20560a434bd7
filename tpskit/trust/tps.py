"""The district's TPS list (`tps.csv`): which polling stations exist and how many voters each registered.

Written by `tpskit provision district-init` from the voter registry's export, read by the district
service (which refuses a result from a TPS not on it, or above its registered voters), the tally and
the signed export's header.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from tpskit.trust.identity import TrustError, check_tps


@dataclass(frozen=True)
class TpsInfo:
    tps: str
    registered_voters: int
    village: str
    kecamatan: str
    regency: str


def read_tps_csv(path: Path) -> dict[str, TpsInfo]:
    """The voter registry export: `tps,registered_voters[,village,kecamatan,regency]`. TrustError naming the
    file and line when it cannot be used.

    Missing area names are derived from the code (regency = first 4 digits, kecamatan = 6, village = 10).
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise TrustError(f"cannot read the TPS list {path}: {e.strerror}") from e
    reader = csv.DictReader(text.splitlines())
    cols = set(reader.fieldnames or [])
    if not {"tps", "registered_voters"} <= cols:
        raise TrustError(f"{path}: the first line must name the columns tps,registered_voters "
                         f"(optionally village,kecamatan,regency); found {sorted(cols)}")
    out: dict[str, TpsInfo] = {}
    for n, row in enumerate(reader, start=2):
        code = (row.get("tps") or "").strip()
        try:
            check_tps(code)
        except TrustError as e:
            raise TrustError(f"{path} line {n}: {e}") from None
        raw = (row.get("registered_voters") or "").strip()
        if not raw.isdigit() or not 0 < int(raw) <= 1000:
            raise TrustError(f"{path} line {n}: registered_voters {raw!r} for TPS {code} must be a whole "
                             "number between 1 and 1000")
        if code in out:
            raise TrustError(f"{path} line {n}: TPS {code} is listed twice")
        out[code] = TpsInfo(
            tps=code, registered_voters=int(raw),
            village=(row.get("village") or "").strip() or code[:10],
            kecamatan=(row.get("kecamatan") or "").strip() or code[:6],
            regency=(row.get("regency") or "").strip() or code[:4],
        )
    if not out:
        raise TrustError(f"{path}: the TPS list is empty")
    return out


def write_tps_csv(path: Path, tps: dict[str, TpsInfo]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tps", "registered_voters", "village", "kecamatan", "regency"])
        for t in tps.values():
            w.writerow([t.tps, t.registered_voters, t.village, t.kecamatan, t.regency])
