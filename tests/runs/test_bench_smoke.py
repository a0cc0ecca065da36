"""``make bench`` in a tiny mode: the benchmark runs end to end and prints every figure.

Values are not asserted (the machine is noisy); that each figure is there, and that the engine
did what the world asked of it, is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_tiny_mode_prints_all_figures(tmp_path: Path) -> None:
    figures_file = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "include.tools.bench", "--sizes", "30", "--no-airflow",
        "--latency-ms", "2", "--template-size", "60", "--json", str(figures_file),
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for text in (
        "API calls per entity by outcome",
        "unchanged",
        "stammdaten",
        "kommunikation",
        "entities/s",
        "API-bound",
        "max in flight",
        "peak RSS",
        "RSS growth per",
    ):
        assert text in out, text

    figures = json.loads(figures_file.read_text())
    per_outcome = figures["calls_per_outcome"]
    assert set(per_outcome) == {"unchanged", "stammdaten", "kommunikation"}
    # The world is what it claims: the unchanged group ends unchanged, the others are written.
    assert set(per_outcome["unchanged"]["outcomes"]) == {"no_change"}
    assert per_outcome["stammdaten"]["outcomes"] == {"espocrm_newer": 10}
    direct = figures["direct"]["30"]
    assert sum(direct["outcomes"].values()) == 30
    assert direct["calls"] > 0 and direct["max_concurrent"] <= figures["concurrency"]
    assert direct["rss_peak_mib"] > 0 and figures["airflow"] == {}
    assert len(direct["rss_growth_per_quarter_mib"]) == 3
