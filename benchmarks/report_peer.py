"""Print the peer results in benchmarks/results/peer_*.json as the markdown table of docs/benchmarks.md.

    python benchmarks/report_peer.py            # print it
    python benchmarks/report_peer.py --write    # and put it between the peer-table markers of the page

One row per dataset and side (Cellpose first, then our runs as benchmarks/peer.py named them), with each of
our rows' AP 0.5:0.95 and F1@0.5 divided by Cellpose's in the same run (above 1: we win). With no result
file yet the table holds one "not yet run" row.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_table import write_between  # noqa: E402  (benchmarks/docs_table.py)

RESULTS = Path(__file__).parent / "results"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- peer-table", "<!-- /peer-table -->"
HEADER = ("| dataset | side | run | steps | train s | test images | AP 0.5:0.95 | AP50 | F1@0.5 | SBD | abs DiC "
          "| matching IoU | AP / peer | F1 / peer |\n" + "|---" * 14 + "|")


def _ratio(side: dict, key: str) -> str:
    value = side.get("ratio_to_peer", {}).get(key)
    return "" if value is None else f"{value:.2f}"


def _steps(side: dict) -> str:
    if side.get("epochs") is None:
        return str(side["iterations"])
    return f"{side['iterations']} ({side['epochs']:g} epochs)"


def _run(side: dict) -> str:
    if side["side"] == "peer":
        return side["method"]
    args = list(side.get("extra_args") or [])
    if "--model-out" in args:  # where a model was kept is not part of the recipe (and a path of one machine)
        at = args.index("--model-out")
        del args[at:at + 2]
    extra = " ".join(args)
    return f"{side['name']}: {side['method']}" + (f" `{extra}`" if extra else "")


def row(dataset: str, side: dict) -> str:
    t = side["test_mean"]
    return (f"| {dataset} | {side['side']} | {_run(side)} | {_steps(side)} | {side['train_seconds']:.0f} | "
            f"{side['n_test_images']} | {t['ap']:.3f} | {t['ap50']:.3f} | {t['f1']:.3f} | {t['sbd']:.3f} | "
            f"{t['abs_dic']:.1f} | {t['matching_iou']:.3f} | {_ratio(side, 'ap')} | {_ratio(side, 'f1')} |")


def table(results_dir: Path = RESULTS) -> str:
    results = sorted((json.loads(p.read_text()) for p in results_dir.glob("peer_*.json")),
                     key=lambda r: r["dataset"])
    lines = [HEADER]
    for result in results:
        lines += [row(result["dataset"], side) for side in result["sides"]]
    if not results:
        lines.append("| not yet run |" + " |" * 13)
    return "\n".join(lines) + "\n"


def write(text: str, page: Path = PAGE) -> None:
    write_between(page, START, END, text)


if __name__ == "__main__":
    text = table()
    print(text, end="")
    if "--write" in sys.argv[1:]:
        write(text)
