"""The installed console script exits 0 after a successful run (a returned CLI object must not
become the exit status)."""

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, tinify

BIN = Path(sys.executable).parent


def test_doodl_pl_console_exits_zero(tiny_assets, tmp_path):
    config = tinify(ROOT / "configs" / "baseline_vanilla.yaml", tiny_assets, tmp_path / "run")
    proc = subprocess.run(
        [str(BIN / "doodl-pl"), "fit", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "manifest.jsonl").is_file()
