"""The top-level callbacks/ folder is installed as doodl_pl.callbacks in a real (non-editable)
install."""

import os
import subprocess
import sys

from helpers import ROOT


def test_callbacks_import_from_installed_copy(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "doodl_pl" / "callbacks" / "renormalize.py").is_file()
    code = (
        "import doodl_pl, doodl_pl.callbacks as c; "
        "print(doodl_pl.__file__); print(c.RenormalizeLatents.__module__)"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0].startswith(str(target))
    assert out[1] == "doodl_pl.callbacks.renormalize"
