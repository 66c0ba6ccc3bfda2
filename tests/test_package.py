"""The package as users install it: light import, napari manifest, console script."""

import subprocess
import sys


def test_importing_the_package_imports_neither_qt_nor_torch():
    code = ("import sys, napari_deepcolor; "
            "bad = [m for m in ('torch', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'napari') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifest_validates_with_imports_checked():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-deepcolor")
    manifest.validate_imports()  # raises if any python_name does not import
    assert manifest.name == "napari-deepcolor"


def test_npe2_validate_command_passes():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-deepcolor", "--imports"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "valid" in result.stdout.lower(), result.stdout + result.stderr


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "napari_deepcolor.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("train", "predict", "evaluate"):
        assert command in result.stdout


def test_every_declared_dependency_says_what_it_does_for_us_in_the_docs():
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.match(r"[A-Za-z0-9_.-]+(\[[^]]*\])?", d).group(0) for d in declared]
    docs = (root / "docs" / "index.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Dependencies"):docs.index("\n## ", docs.index("## Dependencies") + 3)]
    missing = [name for name in names if f"- **{name}**:" not in section]
    assert not missing, f"docs/index.md's Dependencies section does not say what these are for: {missing}"
