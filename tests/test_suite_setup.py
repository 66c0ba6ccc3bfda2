"""The test suite on a machine without the real data or a display: tests skip and say why (and fail in CI)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(test: str, tmp_path, **environment) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(environment)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_data_tests_skip_with_the_reason_when_the_data_is_absent(tmp_path):
    absent = tmp_path / "no-data-here"
    result = _pytest("tests/test_cli.py::test_evaluate_on_real_bbbc010_masks", tmp_path,
                     NAPARI_DEEPCOLOR_DATA=str(absent))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and str(absent) in result.stdout and "NAPARI_DEEPCOLOR_DATA" in result.stdout


def test_data_tests_fail_in_ci_when_the_data_is_absent(tmp_path):
    result = _pytest("tests/test_cli.py::test_evaluate_on_real_bbbc010_masks", tmp_path,
                     NAPARI_DEEPCOLOR_DATA=str(tmp_path / "no-data-here"), CI="1")
    assert result.returncode == 1 and "CI must run every test" in result.stdout


def test_viewer_tests_skip_with_the_reason_when_qt_cannot_start(tmp_path):
    # an unknown Qt platform makes Qt abort the way a missing display or missing system libraries do
    result = _pytest("tests/napari/test_layers.py", tmp_path, QT_QPA_PLATFORM="no-such-platform")
    assert "Fatal Python error" not in result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped" in result.stdout and "Qt could not start" in result.stdout and "passed" not in result.stdout


def test_no_test_names_an_absolute_data_path():
    absolute = re.compile(r"[\"']/(?:work|home|Users|data|mnt)/")  # a string literal that starts at the root
    for path in (ROOT / "tests").rglob("*.py"):
        assert not absolute.search(path.read_text(encoding="utf-8")), f"{path.name} hard-codes an absolute path"


def test_bioimageio_tests_fail_in_ci_when_the_extra_is_missing(tmp_path):
    """Like every other optional test: a skip outside CI, a failure in CI (importorskip would skip in CI too)."""
    broken = tmp_path / "shadow" / "bioimageio"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('bioimageio hidden by the test')\n")
    path = os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])
    test = "tests/test_bioimageio.py::test_a_zip_that_is_not_our_package_is_a_clear_error"
    skipped = _pytest(test, tmp_path, PYTHONPATH=path)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout and "bioimageio extra is missing" in \
        skipped.stdout, skipped.stdout + skipped.stderr
    failed = _pytest(test, tmp_path, PYTHONPATH=path, CI="1")
    assert failed.returncode == 1 and "CI must run every test" in failed.stdout, failed.stdout + failed.stderr


def test_no_test_skips_an_optional_dependency_with_importorskip():
    """importorskip skips in CI as well; optional tests go through conftest.skip_or_fail_in_ci."""
    here = Path(__file__).name
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name != here:
            assert "importorskip(" not in path.read_text(encoding="utf-8"), f"{path.name} uses importorskip"
