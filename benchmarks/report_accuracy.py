"""Print the accuracy results in benchmarks/results/ as the markdown table of docs/benchmarks.md.

    python benchmarks/report_accuracy.py            # print it
    python benchmarks/report_accuracy.py --write    # and put it between the table markers of the page
"""

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
ORDER = ["boundary", "coloring", "semiconv", "dcme", "metric"]


def key(result):
    method = result["method"]
    return result["dataset"], ORDER.index(method) if method in ORDER else len(ORDER), method


def table() -> str:
    results = sorted((json.loads(p.read_text()) for p in RESULTS.glob("accuracy_*.json")), key=key)
    lines = ["| dataset | method | iterations | test images | SBD | abs DiC | AP 0.5:0.95 | AP50 | F1@0.5 | matching IoU "
             "| tuned decode |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t = r["test_mean"]
        decode = ", ".join(f"{k}={v:g}" for k, v in r["decode_parameters"].items())
        lines.append(f"| {r['dataset']} | {r['method']} | {r['iterations']} | {r['n_test_images']} | {t['sbd']:.3f} | "
                     f"{t['abs_dic']:.1f} | {t['ap']:.3f} | {t['ap50']:.3f} | {t['f1']:.3f} | {t['matching_iou']:.3f} "
                     f"| {decode} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = table()
    print(text, end="")
    if "--write" in sys.argv[1:]:
        page = PAGE.read_text(encoding="utf-8")
        start = page.index("\n", page.index("<!-- accuracy-table")) + 1
        end = page.index("<!-- /accuracy-table -->")
        PAGE.write_text(page[:start] + text + page[end:], encoding="utf-8")
