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
