"""The refinement choice's table in docs/benchmarks.md, from ``accuracy.py`` results that made the choice.

    python benchmarks/accuracy.py --dataset DS --method boundary --seed 0 --model-in MODEL \\
        --result benchmarks/results/ab/refine_choice_NAME.json     # re-tune, choose, score with and without
    python benchmarks/report_refine_choice.py [--write]

One row per result: the validation AP of every combination tried (plain decode, CRF, flips, both), what was
chosen, and the test AP and F1 with the choice and without it (the plain decode of the same model).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_table import write_between  # noqa: E402  (benchmarks/docs_table.py)

RESULTS = Path(__file__).parent / "results" / "ab"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
COMBINATIONS = ("none", "crf", "crf_default_weights", "none+flips", "crf+flips", "crf_default_weights+flips")
HEADER = ("| dataset | model | steps | validation AP: " + " / ".join(COMBINATIONS[:2] + COMBINATIONS[3:5]) +
          " | chosen | test AP plain | test AP chosen | test F1 plain | test F1 chosen |\n" + "|---" * 9 + "|")


def row(path: Path) -> str:
    result = json.loads(path.read_text())
    refinement = result["refinement"]
    tried = refinement["validation"]
    plain = refinement.get("test_mean_plain", result["test_mean"])  # none chosen: the same decode
    chosen = result["test_mean"]
    validation = " / ".join(f"{tried[k]:.3f}" if k in tried else "-" for k in COMBINATIONS[:2] + COMBINATIONS[3:5])
    return (f"| {result['dataset']} | {path.stem.removeprefix('refine_choice_')} | {result['iterations']} | "
            f"{validation} | {tried['chosen']} | {plain['ap']:.3f} | {chosen['ap']:.3f} | {plain['f1']:.3f} | "
            f"{chosen['f1']:.3f} |")


def table(results: Path = RESULTS) -> str:
    rows = [row(path) for path in sorted(results.glob("refine_choice_*.json"))]
    return "\n".join([HEADER, *(rows or ["| not yet run |" + " |" * 8])]) + "\n"


if __name__ == "__main__":
    text = table()
    print(text, end="")
    if "--write" in sys.argv[1:]:
        write_between(PAGE, "<!-- refine-choice-table", "<!-- /refine-choice-table -->", text)
