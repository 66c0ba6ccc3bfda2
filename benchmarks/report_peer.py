"""Print the peer results in benchmarks/results/peer_*.json as the markdown table of docs/benchmarks.md.

    python benchmarks/report_peer.py            # print it
    python benchmarks/report_peer.py --write    # and put it between the peer-table markers of the page

One row per dataset and side (Cellpose first, then our runs as benchmarks/peer.py named them), with each of
our rows' AP 0.5:0.95 and F1@0.5 divided by Cellpose's in the same run (above 1: we win), the threads each
side had and the cores other processes kept busy while it ran (how alone it was). With no result
file yet the table holds one "not yet run" row. These are the seed-0 runs, ``peer_<dataset>.json``.

    python benchmarks/report_peer.py --starved [--seeds] [--write]

prints the same tables of the runs of sessions 5-10 (benchmarks/results/starved/), which started every
side at once with one thread each: kept only as the record of how a shared machine starves the bigger net.

    python benchmarks/report_peer.py --seeds [--write]

prints the seeds table instead: for each dataset with runs of other seeds (``peer_<dataset>_seed<N>.json``,
from ``peer.py --cellpose-args "--seed N" --run NAME=METHOD:"--seed N"``), per side the scores of every seed
and their medians, and the median of the per-seed ratios ours / peer; a recipe variant (below) run at two
seeds or more gets its row too. A Cellpose run reused by a later run (``--cellpose-from``) counts once, and a
side run in some seeds only has fewer.

    python benchmarks/report_peer.py --ab [--write]

prints the recipe A/B table: per dataset and seed, our run of that seed (``peer_<dataset>[_seed<N>].json``)
and every variant run against that same Cellpose training
(``benchmarks/results/ab/peer15_<variant>_<dataset>[_seed<N>].json``, from ``peer.py --cellpose-from``), with
steps, scores, the ratios to Cellpose, and the refinement the model chose on its validation images with the
test AP it had without it.
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_table import write_between  # noqa: E402  (benchmarks/docs_table.py)

RESULTS = Path(__file__).parent / "results"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
STARVED = RESULTS / "starved"
HEADER = ("| dataset | side | run | steps | threads | others' cores | train s | test images | AP 0.5:0.95 | AP50 | "
          "F1@0.5 | SBD | abs DiC | matching IoU | AP / peer | F1 / peer |\n" + "|---" * 16 + "|")


SEEDS_HEADER = ("| dataset | side | seeds | median steps | AP 0.5:0.95 by seed | median AP | F1@0.5 by seed | "
                "median F1 | median AP / peer | median F1 / peer |\n" + "|---" * 10 + "|")


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
    for flag in ("--model-out", "--model-in"):  # model paths are not part of the recipe (and of one machine)
        if flag in args:
            at = args.index(flag)
            del args[at:at + 2]
    extra = " ".join(args)
    retuned = " (decode re-tuned)" if "--model-in" in (side.get("extra_args") or []) else ""
    return f"{side['name']}: {side['method']}" + (f" `{extra}`" if extra else "") + retuned


def _alone(result: dict, side: dict) -> str:
    """The cores other processes kept busy while the side ran, or how many sides shared the machine."""
    if result.get("sides_at_once", 1) > 1:
        return f"{result['sides_at_once']} sides at once"
    others = side.get("other_processes_cores")
    return "" if others is None else f"{others:.2f}"


def row(result: dict, side: dict) -> str:
    t = side["test_mean"]
    return (f"| {result['dataset']} | {side['side']} | {_run(side)} | {_steps(side)} | "
            f"{result.get('threads_per_side', '')} | {_alone(result, side)} | {side['train_seconds']:.0f} | "
            f"{side['n_test_images']} | {t['ap']:.3f} | {t['ap50']:.3f} | {t['f1']:.3f} | {t['sbd']:.3f} | "
            f"{t['abs_dic']:.1f} | {t['matching_iou']:.3f} | {_ratio(side, 'ap')} | {_ratio(side, 'f1')} |")


def _seed_of(path: Path) -> int:
    """N of ``..._seed<N>.json``; 0 without the suffix."""
    _, found, seed = path.stem.rpartition("_seed")
    return int(seed) if found else 0


def _seed_runs(results_dir: Path) -> dict[str, dict[int, dict]]:
    """{dataset: {seed: result}}: ``peer_<dataset>.json`` is seed 0, ``peer_<dataset>_seed<N>.json`` seed N."""
    runs: dict[str, dict[int, dict]] = {}
    for path in results_dir.glob("peer_*.json"):
        result = json.loads(path.read_text())
        runs.setdefault(result["dataset"], {})[_seed_of(path)] = result
    return runs


def _variant_runs(results_dir: Path) -> dict[tuple[str, int], list[dict]]:
    """{(dataset, seed): results} of the recipe variants, ``ab/peer15_<variant>_<dataset>[_seed<N>].json``."""
    variants: dict[tuple[str, int], list[dict]] = {}
    for path in sorted((results_dir / "ab").glob("peer15_*.json")):
        result = json.loads(path.read_text())
        variants.setdefault((result["dataset"], _seed_of(path)), []).append(result)
    return variants


def table(results_dir: Path = RESULTS) -> str:
    results = sorted((by_seed[0] for by_seed in _seed_runs(results_dir).values() if 0 in by_seed),
                     key=lambda r: r["dataset"])
    lines = [HEADER]
    for result in results:
        lines += [row(result, side) for side in result["sides"]]
    if not results:
        lines.append("| not yet run |" + " |" * 15)
    return "\n".join(lines) + "\n"


def _identity(side: dict) -> tuple:
    """Equal for one training scored twice: a peer run reused by ``peer.py --cellpose-from`` is not a new seed."""
    return side["name"], side["train_seconds"], json.dumps(side["test_mean"], sort_keys=True)


def seeds_table(results_dir: Path = RESULTS) -> str:
    """Per dataset run with more than one seed and per side: the scores by seed and their medians; a recipe
    variant run at two seeds or more has its own row."""
    lines = [SEEDS_HEADER]
    variants = _variant_runs(results_dir)
    for dataset, by_seed in sorted(_seed_runs(results_dir).items()):
        if len(by_seed) < 2:
            continue
        results = [by_seed[seed] for seed in sorted(by_seed)]
        in_peer_files = {s["name"] for result in results for s in result["sides"]}
        results += [r for (d, _), runs in sorted(variants.items()) if d == dataset for r in runs]
        trained = list({_identity(s): s for result in results for s in result["sides"]}.values())
        for name in dict.fromkeys(s["name"] for s in trained):
            sides = [s for s in trained if s["name"] == name]
            if len(sides) < 2 and name not in in_peer_files:
                continue  # a recipe variant of one seed: in the A/B table only
            ap = [s["test_mean"]["ap"] for s in sides]
            f1 = [s["test_mean"]["f1"] for s in sides]
            ratios = {k: [s["ratio_to_peer"][k] for s in sides if (s.get("ratio_to_peer") or {}).get(k) is not None]
                      for k in ("ap", "f1")}
            lines.append(f"| {dataset} | {sides[0]['side']} {name} | {len(sides)} | "
                         f"{statistics.median(s['iterations'] for s in sides):.0f} | "
                         f"{' / '.join(f'{v:.3f}' for v in ap)} | {statistics.median(ap):.3f} | "
                         f"{' / '.join(f'{v:.3f}' for v in f1)} | {statistics.median(f1):.3f} | "
                         + " | ".join(f"{statistics.median(r):.2f}" if r else "" for r in ratios.values()) + " |")
    if len(lines) == 1:
        lines.append("| not yet run |" + " |" * 9)
    return "\n".join(lines) + "\n"


AB_HEADER = ("| dataset | seed | run | steps | AP 0.5:0.95 | F1@0.5 | AP / peer | F1 / peer | Cellpose AP / F1 | "
             "refinement chosen | AP without it |\n" + "|---" * 11 + "|")


def _refinement(side: dict) -> tuple[str, str]:
    """(what the model chose to apply, the test AP of the plain decode) of a run that made the choice."""
    chosen = side.get("refinement")
    if not chosen:
        return "", ""
    applied = " + ".join(name for name, on in (("CRF", chosen.get("refine") == "crf"), ("flips", chosen.get("flips")))
                         if on) or "none"
    plain = chosen.get("test_mean_plain", {}).get("ap")
    return applied, "" if plain is None else f"{plain:.3f}"


def ab_table(results_dir: Path = RESULTS) -> str:
    """Per dataset and seed, our run of that seed and its recipe variants, each against the same Cellpose run."""
    lines = [AB_HEADER]
    variants = _variant_runs(results_dir)
    for dataset, by_seed in sorted(_seed_runs(results_dir).items()):
        for seed in sorted(set(by_seed) & {s for d, s in variants if d == dataset}):
            for result in [by_seed[seed], *variants[dataset, seed]]:
                peer = next((s for s in result["sides"] if s["side"] == "peer"), None)
                cellpose = "" if peer is None else f"{peer['test_mean']['ap']:.3f} / {peer['test_mean']['f1']:.3f}"
                for side in (s for s in result["sides"] if s["side"] == "ours"):
                    t = side["test_mean"]
                    lines.append(f"| {dataset} | {seed} | {_run(side)} | {_steps(side)} | {t['ap']:.3f} | "
                                 f"{t['f1']:.3f} | {_ratio(side, 'ap')} | {_ratio(side, 'f1')} | {cellpose} | "
                                 + " | ".join(_refinement(side)) + " |")
    if len(lines) == 1:
        lines.append("| not yet run |" + " |" * 10)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    seeds, starved, ab = ("--seeds" in sys.argv[1:], "--starved" in sys.argv[1:], "--ab" in sys.argv[1:])
    folder = STARVED if starved else RESULTS
    text = ab_table(folder) if ab else seeds_table(folder) if seeds else table(folder)
    marker = "peer-ab-table" if ab else ("starved-" if starved else "") + ("peer-seeds-table" if seeds else "peer-table")
    print(text, end="")
    if "--write" in sys.argv[1:]:
        write_between(PAGE, f"<!-- {marker}", f"<!-- /{marker} -->", text)
