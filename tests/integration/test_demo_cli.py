"""`mfg demo --out DIR`: the reference scenario end to end, on the configured database."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from labels import isbt128
from tests.conftest import require_tool, run_cli


def test_the_reference_scenario_writes_labels_that_match_its_summary(
    database_url: str, tmp_path: Path
) -> None:
    result = run_cli(database_url, "demo", "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["dose"]["prescribed_cells"] == 5e7
    assert abs(summary["dose"]["delivered_cells"] / 5e7 - 1) <= 0.10
    assert 5.0 <= summary["dose"]["final_volume_ml"] <= 10.0
    syringe = summary["syringe"]
    assert isbt128.din_check_character(syringe["din"]) == syringe["din_check_character"]
    barcodes = syringe["barcodes"]
    assert barcodes["din"] == syringe["din_code"] and barcodes["product_code"] == syringe["product_code"]
    assert barcodes["coi"] == summary["subject"]["wristband"]
    for code in barcodes.values():
        isbt128.parse(code)  # every encoded string is a valid ISBT 128 data structure
    files = [Path(f) for f in summary["files"]]
    assert all(f.exists() and f.read_bytes().startswith(b"%PDF") for f in files)

    pdftoppm = require_tool("pdftoppm", "rasterises label PDFs")
    zbarimg = require_tool("zbarimg", "decodes printed barcodes")
    label = next(f for f in files if f.name == "syringe-label.pdf")
    subprocess.run([pdftoppm, "-r", "300", "-png", str(label), str(tmp_path / "syringe")], check=True)
    decoded = subprocess.run(
        [
            zbarimg,
            "-q",
            "--raw",
            "-Sdisable",
            "-Scode128.enable",
            *map(str, sorted(tmp_path.glob("syringe*.png"))),
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert sorted(decoded) == sorted(barcodes.values())
    verify = run_cli(database_url, "audit", "verify")
    assert verify.returncode == 0, verify.stdout
