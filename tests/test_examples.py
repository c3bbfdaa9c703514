"""examples/explore_study.py run as a plain script on a finished study: every figure it saves is a real PNG.

On the two-model, two-seed study of tests/test_study.py (run once per pytest process, shared with it and
tests/test_cli.py), and on a copy of one of its runs alone (one model, one noise rate, one seed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from matplotlib.image import imread
from test_study import tiny_study_dir

pytestmark = pytest.mark.slow

SCRIPT = REPO / "examples" / "explore_study.py"
FIGURES = ["curves", "test_error_heatmap", "activations", "cka"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    return tiny_study_dir(tmp_path_factory)


def run_example(*args, cwd: Path, env: dict | None = None) -> list[Path]:
    """Run the script; returns the figure paths it printed, after checking it succeeded."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}  # the checkout, also when not pip-installed
    result = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return [Path(line) for line in result.stdout.splitlines() if line.endswith(".png")]


def assert_figures(paths: list[Path], directory: Path) -> None:
    """One file per figure in `directory`, each a PNG that draws something (not one flat colour)."""
    assert paths == [directory / f"{name}.png" for name in FIGURES]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        pixels = imread(path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and np.ptp(pixels[..., :3]) > 0.5, path


def test_saves_every_figure_of_a_study_with_two_models_and_two_seeds(study_dir, tmp_path):
    out = tmp_path / "figures"
    assert_figures(run_example(study_dir, "--out", out, cwd=tmp_path), out)


def test_runs_on_one_model_and_one_seed_with_the_default_arguments(study_dir, tmp_path):
    """Without arguments: the study is results/default under the working directory, figures go to a new
    temporary directory."""
    run = "mlp3-sym30-ce-s0"
    study = tmp_path / "results" / "default"
    for part in ("runs", "metrics"):
        shutil.copytree(study_dir / part / run, study / part / run)
    temp = tmp_path / "tmp"
    temp.mkdir()
    paths = run_example(cwd=tmp_path, env={"TMPDIR": str(temp)})
    assert len(paths) == len(FIGURES) and paths[0].parent.parent == temp
    assert_figures(paths, paths[0].parent)
