"""The committed wire code in contracts/_wire must be exactly what `make proto` generates."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _diff(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    out = [f"only in committed: {n}" for n in cmp.left_only]
    out += [f"only in fresh generation: {n}" for n in cmp.right_only]
    out += [f"differs: {n}" for n in cmp.diff_files]
    for name in cmp.subdirs:
        out += [f"{name}/{line}" for line in _diff(a / name, b / name)]
    return out


def test_generated_wire_code_matches_proto(tmp_path: Path) -> None:
    fresh = tmp_path / "_wire"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(fresh)],
        check=True,
        capture_output=True,
    )
    drift = _diff(ROOT / "contracts" / "_wire", fresh)
    assert not drift, "contracts/_wire drifted from proto/; run `make proto`:\n" + "\n".join(drift)
