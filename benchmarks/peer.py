"""Side by side: Cellpose 3 from scratch and our methods, same split, same wall-clock budget, each side alone.

    python benchmarks/peer.py --dataset bbbc039 --minutes 15 --methods boundary coloring
    python benchmarks/peer.py --dataset usiigaci --minutes 15 \\
        --run boundary=boundary --run coloring=coloring --run coloring_plain=coloring:"--option semantic_head=false"

Run with the project's environment (napari_deepcolor importable). What it does:

1. Splits the dataset exactly as benchmarks/accuracy.py does (:func:`accuracy.held_out`: every 5th pair in
   name order is a test image). Our runs train on the rest, of which accuracy.py keeps 15 % aside to tune
   the decode parameters; Cellpose has no decode tuning step (its flow and cell-probability thresholds
   stay at their defaults), so it trains on all the non-test images. The split goes to
   ``WORK/split.json`` (BBBC010's overlapping worms are listed as per-object masks; the Cellpose side
   combines them first-wins for training).
2. Runs ``benchmarks/cellpose_peer.py`` under ``--cellpose-python`` (a Python with ``cellpose<4``; nothing
   of this project is importable there) and one ``benchmarks/accuracy.py`` subprocess per run, **one after
   another**, each with ``--threads`` threads (default: every core) and the same ``--minutes``: each side has
   the machine to itself, as a user running it would. Before each side the machine must be quiet (other
   processes using fewer than ``--quiet-cores`` cores; it waits up to ``--quiet-timeout`` and then refuses,
   unless ``--allow-busy``), and each side's record says how many cores other processes used while it ran,
   its own CPU seconds, and the load averages. ``--cpu-lock FILE`` holds an exclusive flock on FILE during
   each side, so that other jobs started with ``flock FILE ...`` wait their turn. (Sessions 5-10 started
   every side at once with one thread each: Cellpose's larger net then made a fifth of its steps, and its
   schedule never left the peak rate; docs/benchmarks.md keeps those rows only as that lesson.)
   A run is ``NAME=METHOD`` or ``NAME=METHOD:"EXTRA ARGS"``
   (extra accuracy.py arguments, so one method can be run twice with different options);
   ``--methods M ...`` is short for ``--run M=M``. Logs go to ``WORK/<name>.log``.
3. Scores Cellpose's label images with our metrics (:func:`napari_deepcolor.metrics.evaluate` against
   :func:`accuracy.ground_truth`, as accuracy.py scores ours; BBBC010 as per-object masks), reads our
   runs' result files, checks that every side was scored on the same test images, and writes
   ``--out`` (default ``benchmarks/results/peer_<dataset>.json``): per side AP 0.5:0.95, AP50, F1@0.5,
   SBD, |DiC|, matching IoU, steps (and Cellpose's epochs), training and wall seconds, and for ours the
   ratios ours / peer of AP and F1. ``python benchmarks/report_peer.py --write`` puts the table in
   docs/benchmarks.md.

``--cellpose-from DIR`` scores the labels of an earlier Cellpose run (its ``--out`` folder, which
holds ``cellpose_run.json``) instead of training Cellpose again, e.g. to compare a new method against
a peer run already made; the result then says so (``"reused": DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402  (benchmarks/accuracy.py: DATASETS, held_out, ground_truth)
from napari_deepcolor.data import detect_layout, read_labels  # noqa: E402
from napari_deepcolor.errors import DeepColorError  # noqa: E402
from napari_deepcolor.metrics import evaluate, summarize  # noqa: E402

HERE = Path(__file__).resolve().parent
CELLPOSE_PEER = HERE / "cellpose_peer.py"
DEFAULT_CELLPOSE_PYTHON = HERE.parents[1] / "cpvenv" / "bin" / "python"
METRICS = ("ap", "ap50", "f1", "sbd", "abs_dic", "matching_iou")
PEER = "cellpose"


def parse_run(text: str) -> tuple[str, str, list[str]]:
    """``NAME=METHOD[:EXTRA ARGS]`` as (name, method, extra arguments).

    >>> parse_run('coloring_plain=coloring:"--option semantic_head=false --patch-size 224"')
    ('coloring_plain', 'coloring', ['--option', 'semantic_head=false', '--patch-size', '224'])
    >>> parse_run("boundary=boundary")
    ('boundary', 'boundary', [])
    """
    name, sep, rest = text.partition("=")
    method, _, extra = rest.partition(":")
    if not sep or not name or not method:
        raise argparse.ArgumentTypeError(f"--run {text!r}: write NAME=METHOD or NAME=METHOD:\"EXTRA ARGS\"")
    if not all(c.isalnum() or c in "_-." for c in name) or name == PEER:
        raise argparse.ArgumentTypeError(f"--run {text!r}: the name must be a plain file name, not '{PEER}'")
    return name, method, shlex.split(extra.strip().strip('"').strip("'")) if extra else []


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=accuracy.DATASETS, required=True)
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget of every side")
    parser.add_argument("--methods", nargs="*", default=[], help="our methods, each run with accuracy.py's defaults")
    parser.add_argument("--run", type=parse_run, action="append", default=[], metavar='NAME=METHOD[:"ARGS"]',
                        help="one of our runs with extra accuracy.py arguments; may be repeated")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of each side (default: every core; the sides run one after another)")
    parser.add_argument("--quiet-cores", type=float, default=0.25,
                        help="a side starts only when other processes keep fewer cores than this busy (default 0.25)")
    parser.add_argument("--quiet-timeout", type=float, default=1800,
                        help="seconds to wait for the machine to fall quiet before each side (default 1800)")
    parser.add_argument("--allow-busy", action="store_true",
                        help="run a side even when the machine stays busy (recorded in the result)")
    parser.add_argument("--cpu-lock", type=Path, default=None,
                        help="hold an exclusive flock on this file while each side runs, so that jobs started "
                             "with `flock FILE ...` wait")
    parser.add_argument("--cellpose-python", type=Path, default=DEFAULT_CELLPOSE_PYTHON,
                        help=f"a Python with cellpose<4 (default {DEFAULT_CELLPOSE_PYTHON})")
    parser.add_argument("--cellpose-args", default="", help='extra cellpose_peer.py arguments, e.g. "--seed 1"')
    parser.add_argument("--cellpose-from", type=Path, default=None,
                        help="score this earlier cellpose_peer.py --out folder instead of training Cellpose")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="split file, logs, label images, per-run results (default: a new temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="result file (default benchmarks/results/"
                                                                "peer_<dataset>.json)")
    args = parser.parse_args(argv)
    args.runs = [(m, m, []) for m in args.methods] + args.run
    names = [name for name, _, _ in args.runs]
    if len(set(names)) != len(names):
        parser.error(f"run names must differ (got {names}); name repeated methods with --run NAME=METHOD")
    if not args.runs and args.cellpose_from is not None:
        parser.error("give at least one of our methods to score beside the reused peer: --methods boundary")
    if args.cellpose_from is None and not args.cellpose_python.is_file():
        parser.error(f"--cellpose-python {args.cellpose_python} does not exist; point it at a Python with cellpose<4")
    args.out = args.out or accuracy.RESULTS / f"peer_{args.dataset}.json"
    return args


def split_entry(pair) -> dict:
    entry = {"name": pair.name, "image": str(pair.image)}
    if pair.labels is not None:
        entry["labels"] = str(pair.labels)
    else:
        entry["object_masks"] = [str(p) for p in pair.object_masks]
    return entry


def write_split(dataset: str, path: Path) -> tuple[list, dict]:
    """accuracy.py's split as a JSON file for cellpose_peer.py: (test pairs, split summary)."""
    images, labels = accuracy.DATASETS[dataset][:2]
    pairs = sorted(detect_layout(images, labels).pairs, key=lambda p: p.name)
    test = accuracy.held_out(pairs)
    test_names = {p.name for p in test}
    train = [p for p in pairs if p.name not in test_names]
    if len(test_names) != len(test):
        raise DeepColorError(f"{dataset}: two test images share a name; the label files could not be told apart")
    split = {"dataset": dataset, "rule": "accuracy.held_out: every 5th pair in name order is a test image",
             "train": [split_entry(p) for p in train], "test": [split_entry(p) for p in test]}
    path.write_text(json.dumps(split, indent=1))
    return test, {"n_pairs": len(pairs), "n_train_peer": len(train), "n_test": len(test),
                  "test_names": [p.name for p in test]}


def thread_env(threads: int, *, keep_pythonpath: bool) -> dict:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    if not keep_pythonpath:
        env.pop("PYTHONPATH", None)  # the peer must not see napari_deepcolor
    return env


def commands(args, work: Path) -> dict[str, tuple[list[str], dict]]:
    """Every side's command line and environment, by side name."""
    jobs = {}
    if args.cellpose_from is None:
        jobs[PEER] = ([str(args.cellpose_python), str(CELLPOSE_PEER), "--split", str(work / "split.json"),
                       "--minutes", str(args.minutes), "--threads", str(args.threads),
                       "--out", str(work / PEER), *shlex.split(args.cellpose_args)],
                      thread_env(args.threads, keep_pythonpath=False))
    for name, method, extra in args.runs:
        jobs[name] = ([sys.executable, str(HERE / "accuracy.py"), "--dataset", args.dataset, "--method", method,
                       "--minutes", str(args.minutes), "--threads", str(args.threads),
                       "--result", str(work / f"accuracy_{name}.json"), *extra],
                      thread_env(args.threads, keep_pythonpath=True))
    return jobs


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine has spent busy since boot (/proc/stat, all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def busy_cores(seconds: float = 5.0) -> float:
    """How many cores the machine kept busy over ``seconds`` (this process sleeps meanwhile)."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


def wait_for_quiet(limit_cores: float, timeout_s: float) -> float:
    """Wait until the machine is quiet (fewer than ``limit_cores`` busy), up to ``timeout_s``; the last
    reading. The caller decides what a reading over the limit means."""
    waited = 0.0
    while True:
        cores = busy_cores()
        if cores < limit_cores or waited >= timeout_s:
            return cores
        print(f"the machine is busy ({cores:.2f} cores in use by other processes); waiting", flush=True)
        time.sleep(25.0)
        waited += 30.0


class CpuLock:
    """An optional exclusive lock on a file (fcntl), held while one side runs, so that cooperating
    jobs (``flock FILE command``) wait for the machine instead of sharing it."""

    def __init__(self, path: Path | None):
        self.path, self.handle = path, None

    def __enter__(self):
        if self.path is not None:
            import fcntl

            self.handle = open(self.path, "a")
            fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()  # closing releases the lock


def run_alone(name: str, command: list[str], env: dict, work: Path, *, quiet_cores: float, quiet_timeout: float,
              allow_busy: bool, lock: Path | None) -> dict:
    """Run one side with the machine to itself: wait for quiet, run, and record what else used the CPU.

    The record: wall seconds, the side's own CPU seconds, the cores other processes kept busy meanwhile
    (machine busy time from /proc/stat less the side's), load averages and the quiet check. Raises
    DeepColorError when the machine does not fall quiet in time, unless ``allow_busy`` (then recorded).
    """
    with CpuLock(lock):
        before_cores = wait_for_quiet(quiet_cores, quiet_timeout)
        if before_cores >= quiet_cores and not allow_busy:
            raise DeepColorError(f"{name}: other processes keep {before_cores:.2f} cores busy; a side must run "
                                 "alone. Stop them (or pass --allow-busy, which records it)")
        load_before = os.getloadavg()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy_before, t0 = machine_busy_seconds(), time.perf_counter()
        print(f"started {name}: {shlex.join(command)}", flush=True)
        with open(work / f"{name}.log", "w") as log:
            returncode = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=HERE.parent)
        wall = time.perf_counter() - t0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = (children.ru_utime - children_before.ru_utime) + (children.ru_stime - children_before.ru_stime)
        others = max(machine_busy_seconds() - busy_before - own, 0.0)
    print(f"{name} finished (exit {returncode}) after {wall:.0f} s; other processes used {others / wall:.2f} "
          "cores meanwhile", flush=True)
    return {"returncode": returncode, "wall_seconds": round(wall, 1), "cpu_seconds": round(own, 1),
            "cores_used": round(own / wall, 2), "other_processes_cores": round(others / wall, 3),
            "busy_cores_before": round(before_cores, 3), "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "log": str(work / f"{name}.log"),
            "command": shlex.join(command)}


def run_one_at_a_time(jobs: dict, work: Path, args) -> dict[str, dict]:
    """Every side in turn, each alone on the machine with ``args.threads`` threads: {name: its record}."""
    return {name: run_alone(name, command, env, work, quiet_cores=args.quiet_cores, quiet_timeout=args.quiet_timeout,
                            allow_busy=args.allow_busy, lock=args.cpu_lock)
            for name, (command, env) in jobs.items()}


def log_tail(path: str, lines: int = 15) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def score_cellpose(folder: Path, test) -> dict:
    """Cellpose's labels in ``folder`` scored against the ground truth, as accuracy.py scores ours."""
    run = json.loads((folder / "cellpose_run.json").read_text())
    rows = []
    for pair in test:
        path = folder / f"{pair.name}.tif"
        if not path.is_file():
            raise DeepColorError(f"{path}: Cellpose wrote no labels for test image {pair.name}; see its log")
        rows.append({"name": pair.name, **evaluate(accuracy.ground_truth(pair), read_labels(path))})
    summary = summarize(rows)
    return {"name": PEER, "side": "peer", "method": f"cellpose {run['versions']['cellpose']} from scratch",
            "iterations": run["steps"], "epochs": run["epochs"], "train_seconds": run["train_seconds"],
            "n_train_images": run["n_train_images_used"], "n_test_images": len(rows),
            "test_mean": {k: summary[k] for k in METRICS}, "per_image": rows,
            "run": {k: v for k, v in run.items() if k not in ("per_image", "epoch_log", "train_diameters")}}


def read_ours(name: str, method: str, extra: list, path: Path, test_names: list) -> dict:
    result = json.loads(path.read_text())
    scored = [row["name"] for row in result["per_image"]]
    if sorted(scored) != sorted(test_names):
        raise DeepColorError(f"{name}: accuracy.py scored {scored}, not the peer's test images {test_names}; "
                             "has its split changed? Both sides must use accuracy.held_out")
    return {"name": name, "side": "ours", "method": method, "extra_args": extra, "iterations": result["iterations"],
            "epochs": None, "train_seconds": result["train_seconds"], "n_train_images": result["n_train_images"],
            "n_test_images": result["n_test_images"], "test_mean": {k: result["test_mean"][k] for k in METRICS},
            "decode_parameters": result["decode_parameters"], "options": result.get("options"),
            "object_scale": result.get("object_scale"), "per_image": result["per_image"],
            **({"refinement": result["refinement"]} if result.get("refinement") else {})}


def ratio(ours: float, peer: float) -> float | None:
    return round(ours / peer, 3) if peer > 0 else None


def portable(value, places: dict[str, str]):
    """``value`` (a result: dicts, lists, strings) with this machine's folders replaced by the names in
    ``places`` (longest first), so that a result file names no absolute path of the machine it ran on."""
    if isinstance(value, dict):
        return {k: portable(v, places) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, places) for v in value]
    if isinstance(value, str):
        for path in sorted(places, key=len, reverse=True):
            value = value.replace(path, places[path])
    return value


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as JSON at ``path``, atomically."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float))
    os.replace(tmp, path)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"


def main(argv=None) -> int:
    args = parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix=f"peer_{args.dataset}_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}", flush=True)
    test, split = write_split(args.dataset, work / "split.json")
    done = run_one_at_a_time(commands(args, work), work, args)
    failed = {name: r for name, r in done.items() if r["returncode"] != 0}
    for name, r in failed.items():
        print(f"--- {name} failed (exit {r['returncode']}), end of {r['log']}:\n{log_tail(r['log'])}", file=sys.stderr)

    sides = []
    if PEER not in failed:
        peer = score_cellpose(args.cellpose_from or work / PEER, test)
        if PEER in done:
            write_json(work / PEER / "side_record.json", done[PEER])
            peer.update(done[PEER])
        else:  # the earlier run's record of how it ran (steps, threads, other processes), and where it came from
            record = args.cellpose_from / "side_record.json"
            peer.update({**(json.loads(record.read_text()) if record.is_file() else {}),
                         "reused": str(args.cellpose_from)})
        sides.append(peer)
    for name, method, extra in args.runs:
        if name not in failed:
            sides.append({**read_ours(name, method, extra, work / f"accuracy_{name}.json", split["test_names"]),
                          **done[name]})
    peer_mean = sides[0]["test_mean"] if sides and sides[0]["side"] == "peer" else None
    for side in sides:
        side["over_budget"] = side["train_seconds"] > 1.05 * 60 * args.minutes
        if side["over_budget"]:
            print(f"warning: {side['name']} trained {side['train_seconds']:.0f} s on a {args.minutes:g}-minute "
                  "budget; compare its row with that in mind", file=sys.stderr)
        if side["side"] == "ours" and peer_mean is not None:
            side["ratio_to_peer"] = {k: ratio(side["test_mean"][k], peer_mean[k]) for k in ("ap", "f1")}

    result = {"dataset": args.dataset, "minutes": args.minutes, "threads_per_side": args.threads,
              "sides_at_once": 1, "cores": os.cpu_count(), "machine": machine(),
              "split": {**split, "n_train_ours": "the same non-test images, 15 % of them kept for decode tuning",
                        "note": "Cellpose trains on every non-test image: it has no decode tuning step"},
              "sides": sides, "failed": failed}
    # folders named in our runs' extra arguments (e.g. --model-out) and the reused Cellpose run's own work folder
    named = {str(Path(a).parent): "OUT" for _, _, extra in args.runs for a in extra if os.path.isabs(a)}
    if args.cellpose_from is not None:
        named[str(args.cellpose_from.resolve().parent)] = "CELLPOSE_WORK"
    result = portable(result, {**named, str(HERE.parent) + os.sep: "", sys.executable: "python", str(work): "WORK",
                               str(args.cellpose_python): "CELLPOSE_PYTHON",
                               **({str(args.cellpose_from): "CELLPOSE_FROM"} if args.cellpose_from else {})})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    for side in sides:
        t = side["test_mean"]
        print(f"{side['name']:>20}: AP {t['ap']:.3f}  AP50 {t['ap50']:.3f}  F1 {t['f1']:.3f}  SBD {t['sbd']:.3f}  "
              f"|DiC| {t['abs_dic']:.1f}  steps {side['iterations']}  train {side['train_seconds']:.0f} s  "
              f"ratio {side.get('ratio_to_peer')}")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DeepColorError as exc:
        sys.exit(f"peer: {exc}")
