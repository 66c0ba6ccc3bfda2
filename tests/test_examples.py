"""Every script in examples/ runs, with a tiny budget, so that none of them can rot.

Each runs in its own process, as a user would run it (``python examples/NAME.py ...``), with one
torch thread, on the CPU, in a temporary folder.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
COMMON = ["--threads", "1", "--device", "cpu"]

#: script -> tiny arguments (the output folder is added where the script takes one)
RUNS = {
    "train_and_segment.py": ["--iterations", "2", *COMMON],
    "fine_tune.py": ["--iterations", "1", *COMMON],
    "compare_methods.py": ["--iterations", "1", "--no-tune", "--depth", "2", "--width", "8", *COMMON],
    "batch_folder.py": ["--iterations", "1", "--executor", "local", *COMMON],
}


def _run(command, cwd, env=None, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(RUNS) | {"napari_with_widgets.py"}


def test_every_example_says_what_it_shows_and_how_long_it_takes():
    for script in EXAMPLES.glob("*.py"):
        text = script.read_text()
        assert text.startswith('"""'), f"{script.name} has no header docstring"
        assert "How long" in text.split('"""')[1], f"{script.name}'s docstring does not say how long it takes"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RUNS))
def test_example_runs(script, tmp_path):
    args = list(RUNS[script])
    if script != "compare_methods.py":
        args += ["--output", str(tmp_path / "out")]
    stdout = _run([sys.executable, str(EXAMPLES / script), *args], cwd=tmp_path)
    if script == "train_and_segment.py":
        assert (tmp_path / "out" / "bbbc039_A09_s1_labels.tif").is_file()
        assert "mean" in stdout
    elif script == "fine_tune.py":
        assert (tmp_path / "out" / "fine_tuned.safetensors").is_file()
        assert "before" in stdout and "after fine-tuning" in stdout
    elif script == "compare_methods.py":
        for method in ("coloring", "boundary", "semiconv", "dcme", "metric"):
            assert f"\n{method} " in stdout
    elif script == "batch_folder.py":
        labels = sorted((tmp_path / "out" / "labels-local").glob("*.tif"))
        assert len(labels) == 6
        assert "0 failed" in stdout


def test_napari_example_builds_the_viewer(tmp_path):
    command = [sys.executable, str(EXAMPLES / "napari_with_widgets.py"), "--smoke"]
    env = {}
    if not os.environ.get("DISPLAY"):  # pytest-xvfb sets DISPLAY for the session; otherwise bring our own
        if shutil.which("xvfb-run"):
            command = ["xvfb-run", "-a", *command]
        else:
            env["QT_QPA_PLATFORM"] = "offscreen"
    stdout = _run(command, cwd=tmp_path, env=env)
    assert "BBBC039 nuclei (Image)" in stdout and "(Labels)" in stdout
    for widget in ("Train", "Segment", "Batch"):
        assert f"{widget} (napari-deepcolor)" in stdout
