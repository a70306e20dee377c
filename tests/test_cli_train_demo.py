"""`mdwarf-zoo demo` end to end (the README's main command): about 3 minutes on 2 cores.

It is in the default run, so CI runs the real demo once (marker ``demo``;
`pytest -m "not slow and not demo"` leaves it out while iterating)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.demo
def test_demo_end_to_end(tmp_path: Path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "mdwarf_zoo.cli", "demo", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr
    for line in ("predictions:", "report:", "diagnostics:", "plot:", "accuracy on the simulated"):
        assert line in result.stdout
    assert (out / "predictions.ecsv").is_file()
    assert (out / "plots" / "predicted_vs_true.png").is_file()
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    accuracy = diagnostics["accuracy"]["no_transfer"]
    # Better than predicting the middle of the simulated range (uniform: rms = range / sqrt 12).
    assert accuracy["teff"]["rms"] < 1400 / 12**0.5
    assert accuracy["mh"]["rms"] < 1.2 / 12**0.5
    report = (out / "report.md").read_text()
    assert "recipe sha256" in report and 'name = "quickstart"' in report
