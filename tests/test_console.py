"""The installed console script exits 0 after a successful run (a returned CLI object must not
become the exit status), and prints no third-party chatter."""

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, tinify

BIN = Path(sys.executable).parent


def test_doodl_pl_console_exits_zero(tiny_assets, tmp_path):
    config = tinify(ROOT / "configs" / "baseline_vanilla.yaml", tiny_assets, tmp_path / "run")
    proc = subprocess.run(
        [
            str(BIN / "doodl-pl"),
            "fit",
            "--config",
            str(config),
            "--trainer.enable_progress_bar=true",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "manifest.jsonl").is_file()
    # A quiet console: no third-party notices, one summary line at the end.
    err = proc.stderr
    for noise in ("accelerate", "Tip:", "GPU available", "Loading weights", "eval mode", "Epoch 0"):
        assert noise not in err, (noise, err[-2000:])
    assert "items: 100%" in err and "2/2" in err  # the bar counts items, not steps
    last = err.strip().splitlines()[-1]
    assert last.startswith("doodl-pl: 2 item(s) ok, 0 failed") and "outputs in" in last, last
