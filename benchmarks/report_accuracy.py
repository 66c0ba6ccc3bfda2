"""Print the accuracy results in benchmarks/results/ as the markdown table of docs/benchmarks.md."""

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

print("| dataset | method | budget | iterations | test images | SBD | abs DiC | AP 0.5:0.95 | AP50 | F1@0.5 | matching IoU | tuned decode |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(RESULTS.glob("accuracy_*.json")):
    r = json.loads(path.read_text())
    t = r["test_mean"]
    decode = ", ".join(f"{k}={v:g}" for k, v in r["decode_parameters"].items())
    budget = f"{r['minutes']:g} min" if r.get("minutes") else f"{r['budget_iterations']} steps"
    print(f"| {r['dataset']} | {r['method']} | {budget} | {r['iterations']} | {r['n_test_images']} | {t['sbd']:.3f} | "
          f"{t['abs_dic']:.1f} | {t['ap']:.3f} | {t['ap50']:.3f} | {t['f1']:.3f} | {t['matching_iou']:.3f} | {decode} |")
