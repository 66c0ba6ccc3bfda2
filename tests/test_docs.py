"""The documentation site builds without warnings and its CLI reference matches the parser."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli_reference():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current():
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == _cli_reference().render(), "docs/cli.md is out of date: run python scripts/cli_reference.py"


def test_cli_reference_lists_every_subcommand_and_option():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in ("train", "predict", "evaluate", "batch", "demo", "models", "export"):
        assert f"## `{command}`" in text
    for flag in ("--halo-margin", "--size-threshold", "--merge-radius", "--workers", "--device", "--tile-size"):
        assert f"`{flag}`" in text


def test_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail('mkdocs is missing: pip install -e ".[testing]" (it is in the testing extra)')
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    for page in ("index.html", "cli/index.html", "models/index.html", "choosing/index.html", "troubleshooting/index.html",
                 "methods/coloring/index.html", "methods/boundary/index.html", "methods/semiconv/index.html",
                 "methods/dcme/index.html", "methods/metric_learning/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


#: docs/benchmarks.md's generated tables: (marker, the script that prints it, how to regenerate it)
GENERATED_TABLES = [
    ("accuracy-table", ["report_accuracy.py"], "python benchmarks/report_accuracy.py"),
    ("peer-table", ["report_peer.py"], "python benchmarks/report_peer.py --write"),
    ("peer-seeds-table", ["report_peer.py", "--seeds"], "python benchmarks/report_peer.py --seeds --write"),
    ("peer-ab-table", ["report_peer.py", "--ab"], "python benchmarks/report_peer.py --ab --write"),
    ("refine-choice-table", ["report_refine_choice.py"], "python benchmarks/report_refine_choice.py --write"),
    ("starved-peer-table", ["report_peer.py", "--starved"], "python benchmarks/report_peer.py --starved --write"),
    ("starved-peer-seeds-table", ["report_peer.py", "--starved", "--seeds"],
     "python benchmarks/report_peer.py --starved --seeds --write"),
    ("outline-table", ["outline_bias.py", "--report"], "python benchmarks/outline_bias.py --report --write"),
    ("fine-tune-table", ["fine_tune.py", "--report"], "python benchmarks/fine_tune.py --report --write"),
    ("fine-tune-curve", ["fine_tune_curve.py", "--report"], "python benchmarks/fine_tune_curve.py --report --write"),
    ("refine-table", ["refine_crf.py", "--report"], "python benchmarks/refine_crf.py --report (and paste it)"),
    ("flips-table", ["flips.py", "--report"], "python benchmarks/flips.py --report --write"),
    ("object-classes-table", ["object_classes.py", "--report"], "python benchmarks/object_classes.py --report --write"),
    ("decode-grid-table", ["probes/decode_grid.py", "--report"],
     "python benchmarks/probes/decode_grid.py --report --write"),
]


@pytest.mark.parametrize("marker, script, regenerate", GENERATED_TABLES, ids=[t[0] for t in GENERATED_TABLES])
def test_benchmark_tables_are_the_ones_the_result_files_give(marker, script, regenerate):
    """docs/benchmarks.md shows what benchmarks/results/*.json hold, not numbers typed by hand."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script[0]), *script[1:]],
                            capture_output=True, text=True, timeout=120, check=True)
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    start = text.index("\n", text.index(f"<!-- {marker}")) + 1
    shown = text[start:text.index(f"<!-- /{marker} -->")]
    assert shown == result.stdout, f"the {marker} of docs/benchmarks.md is out of date: run {regenerate}"


def test_models_page_is_the_one_the_bundled_model_cards_give():
    """docs/models.md is generated from the model cards inside the starter files."""
    spec = importlib.util.spec_from_file_location("make_starters", ROOT / "scripts" / "make_starters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    assert current == module.render(), "docs/models.md is out of date: run python scripts/make_starters.py --docs-only"


def _manifest_display_name() -> str:
    import yaml

    return yaml.safe_load((ROOT / "src" / "napari_deepcolor" / "napari.yaml").read_text())["display_name"]


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_install_text_leads_with_the_clone_install_that_works(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    clone, published = text.index('pip install -e ".[all]"'), text.index('pip install "napari-deepcolor[all]"')
    assert clone < published and "not on PyPI yet" in text
    assert f"Plugins > {_manifest_display_name()}*" in text and "Plugins > DeepColor*" not in text


def test_readme_test_command_says_how_to_get_the_display_ci_uses():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    script = "scripts/install-test-system-packages.sh"
    assert script in text and (ROOT / script).is_file() and os.access(ROOT / script, os.X_OK)
    assert script in (ROOT / ".ci" / "run").read_text()  # CI installs the display the README's way
    assert "NAPARI_DEEPCOLOR_DATA" in text


def test_readme_says_what_a_newcomer_asks_at_install_and_after_training():
    """Python versions, the CPU torch index and what to do without it, the pydantic pin of the bioimageio
    extra, and the NAME.state.safetensors file beside each model (what, how big, deletable)."""
    import tomllib

    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python in text and "Python 3.11 or newer" in text
    assert "--index-url https://download.pytorch.org/whl/cpu" in text and "cannot be reached" in text
    assert "[bioimageio]" in text and "pydantic below 2.12" in text
    state = text[text.index("NAME.state.safetensors"):][:700]
    assert "--resume" in state and "MB" in state and "deleted once the training is done" in state
