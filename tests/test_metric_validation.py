"""The metric validation on the shared dev data: the figures the README reports must not regress."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

# The reported figures (README) minus a small margin; where the aim is met it is the floor itself.
FLOORS = {
    "emotion match top-1 macro recall, GoEmotions Ekman-6": 0.60,
    "emotion match top-1 macro recall, dair-ai val": 0.685,
    "sentiment accuracy, GoEmotions pos vs neg": 0.85,
    "empathy ROC AUC, ED listener intents": 0.80,
    "intensity ROC AUC, GoEmotions emotional vs neutral": 0.77,
    "fluency ROC AUC, original vs shuffled words": 0.95,
    "fluency ROC AUC, original vs looped last sentence": 0.95,
}


@pytest.mark.skipif(not (DATA / "goemotions").is_dir(), reason="../shared/data is not present")
def test_validation_figures_hold():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "validate_metrics.py"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = {row["check"]: row for row in json.loads(proc.stdout)["results"]}
    assert set(results) == set(FLOORS)
    for check, floor in FLOORS.items():
        assert results[check]["value"] >= floor, (check, results[check]["value"])
