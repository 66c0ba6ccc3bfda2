"""The Cellpose side-by-side benchmark's own logic: run parsing, the budget rule, overlap handling, the table."""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cellpose_peer = _load("cellpose_peer")  # imports no cellpose at module level
report_peer = _load("report_peer")


def test_schedule_is_sized_to_end_within_the_budget_with_its_decay():
    n_epochs, per_epoch = cellpose_peer.plan_epochs(900, 5.0, 120, "auto")
    assert per_epoch == 8  # 172 steps fit: full epochs of 15 batches would never leave the warm-up
    assert 100 < n_epochs  # cellpose decays the rate over the last 50 epochs only in runs over 100
    assert n_epochs * 5.0 <= 900  # ... and the last of them ends before the budget does


def test_a_budget_without_room_for_the_decay_is_refused_not_reported_as_zero():
    with pytest.raises(cellpose_peer.PeerError, match="budget too small for the schedule"):
        cellpose_peer.plan_epochs(900, 22.0, 120, "auto")  # 39 steps: the starved runs of sessions 5-10


def test_long_budget_keeps_full_epochs_and_fits_them_to_the_time():
    n_epochs, per_epoch = cellpose_peer.plan_epochs(900, 0.1, 120, "auto")
    assert per_epoch == 120
    assert n_epochs * 0.1 * 15 <= 900 < (n_epochs + 1) * 0.1 * 15 / cellpose_peer.PLAN_MARGIN


def test_a_side_does_not_start_while_other_processes_use_the_machine(tmp_path, monkeypatch):
    peer = _load("peer")
    monkeypatch.setattr(peer, "busy_cores", lambda seconds=5.0: 1.3)
    monkeypatch.setattr(peer.time, "sleep", lambda seconds: None)
    with pytest.raises(peer.DeepColorError, match="must run alone"):
        peer.run_alone("cellpose", ["true"], {}, tmp_path, quiet_cores=0.25, quiet_timeout=60, allow_busy=False,
                       lock=None)
    assert not (tmp_path / "cellpose.log").exists()  # nothing was started


def test_a_side_records_what_else_ran_beside_it(tmp_path, monkeypatch):
    peer = _load("peer")
    monkeypatch.setattr(peer, "busy_cores", lambda seconds=5.0: 1.3)
    command = [sys.executable, "-c", "import time; t = time.process_time(); exec('while time.process_time() - t < 0.3: pass')"]
    record = peer.run_alone("ours", command, dict(os.environ), tmp_path, quiet_cores=0.25, quiet_timeout=0,
                            allow_busy=True, lock=tmp_path / "cpu.lock")
    assert record["returncode"] == 0 and record["busy_cores_before"] == 1.3
    assert record["cpu_seconds"] >= 0.3  # the side's own CPU, apart from the other processes'
    assert {"other_processes_cores", "load_average_before", "load_average_after", "cores_used"} <= set(record)


def test_step_guard_stops_before_a_step_that_would_overrun():
    class Net:
        training = True

    guard = cellpose_peer.StepGuard(deadline=time.perf_counter() + 0.25, first_step_seconds=0.05)
    with pytest.raises(cellpose_peer.BudgetSpent):
        for _ in range(100):
            guard(Net(), ())
            time.sleep(0.05)
    assert 2 <= guard.steps <= 5
    eval_net = Net()
    eval_net.training = False
    guard(eval_net, ())  # prediction after the deadline is not training: no stop


def test_overlapping_masks_combine_first_wins(tmp_path):
    first, second = np.zeros((4, 6), np.uint8), np.zeros((4, 6), np.uint8)
    first[:, :4], second[:, 2:] = 255, 255
    paths = [tmp_path / "a.tif", tmp_path / "b.tif"]
    for path, mask in zip(paths, (first, second)):
        tifffile.imwrite(path, mask)
    labels = cellpose_peer.first_wins([str(p) for p in paths])
    assert labels[0].tolist() == [1, 1, 1, 1, 2, 2]


def test_split_file_without_test_images_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [{"name": "a", "image": "a.tif"}], "test": []}))
    with pytest.raises(cellpose_peer.PeerError, match="'test' list is missing or empty"):
        cellpose_peer.read_split(path)


def _side(name, side, ap, f1, ratio=None):
    mean = {"ap": ap, "ap50": 0.8, "f1": f1, "sbd": 0.7, "abs_dic": 2.0, "matching_iou": 0.75}
    out = {"name": name, "side": side, "method": name, "iterations": 40, "epochs": 40 if side == "peer" else None,
           "train_seconds": 899.0, "n_test_images": 30, "test_mean": mean, "extra_args": []}
    if ratio:
        out["ratio_to_peer"] = ratio
    return out


def test_peer_table_has_a_row_per_side_with_the_ratios_and_how_alone_it_ran(tmp_path):
    result = {"dataset": "bbbc039", "threads_per_side": 2, "sides_at_once": 1,
              "sides": [{**_side("cellpose", "peer", 0.5, 0.8), "other_processes_cores": 0.012},
                        {**_side("boundary", "ours", 0.25, 0.6, {"ap": 0.5, "f1": 0.75}), "other_processes_cores": 0.3}]}
    (tmp_path / "peer_bbbc039.json").write_text(json.dumps(result))
    lines = report_peer.table(tmp_path).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| bbbc039 | peer | cellpose | 40 (40 epochs) | 2 | 0.01 | 899 |")
    assert lines[3].startswith("| bbbc039 | ours | boundary: boundary | 40 | 2 | 0.30 | 899 |")
    assert lines[3].endswith("| 0.250 | 0.800 | 0.600 | 0.700 | 2.0 | 0.750 | 0.50 | 0.75 |")


def test_starved_runs_say_that_their_sides_shared_the_machine(tmp_path):
    result = {"dataset": "usiigaci", "threads_per_side": 1, "sides_at_once": 3,
              "sides": [_side("cellpose", "peer", 0.0, 0.0)]}
    (tmp_path / "peer_usiigaci.json").write_text(json.dumps(result))
    assert "| 40 (40 epochs) | 1 | 3 sides at once | 899 |" in report_peer.table(tmp_path)


def test_seeds_table_gives_each_sides_scores_by_seed_and_their_medians(tmp_path):
    for seed, (peer_ap, ours_ap) in enumerate([(0.1, 0.3), (0.2, 0.1), (0.0, 0.2)]):
        result = {"dataset": "usiigaci", "sides": [
            _side("cellpose", "peer", peer_ap, 0.5),
            _side("boundary", "ours", ours_ap, 0.6, {"ap": ours_ap / peer_ap if peer_ap else None, "f1": 1.2})]}
        if seed == 2:  # Cellpose reused from seed 0 (peer.py --cellpose-from) and a side of this seed only
            result["sides"][0] = {**_side("cellpose", "peer", 0.1, 0.5), "reused": "the seed-0 run"}
            result["sides"].append(_side("coloring", "ours", 0.4, 0.7))
        name = "peer_usiigaci.json" if seed == 0 else f"peer_usiigaci_seed{seed}.json"
        (tmp_path / name).write_text(json.dumps(result))
    (tmp_path / "ab").mkdir()
    for seed, ap in ((0, 0.5), (1, 0.3)):  # a recipe variant at two seeds gets its row; one at one seed does not
        (tmp_path / "ab" / f"peer15_v_usiigaci{'_seed1' if seed else ''}.json").write_text(json.dumps(
            {"dataset": "usiigaci", "sides": [_side("variant", "ours", ap, 0.9)]}))
    (tmp_path / "ab" / "peer15_w_usiigaci.json").write_text(json.dumps(
        {"dataset": "usiigaci", "sides": [_side("once", "ours", 0.9, 0.9)]}))
    (tmp_path / "peer_bbbc039.json").write_text(json.dumps(  # one seed only: not in the seeds table
        {"dataset": "bbbc039", "sides": [_side("cellpose", "peer", 0.5, 0.8)]}))
    lines = report_peer.seeds_table(tmp_path).splitlines()
    assert len(lines) == 6
    assert lines[2] == "| usiigaci | peer cellpose | 2 | 40 | 0.100 / 0.200 | 0.150 | 0.500 / 0.500 | 0.500 |  |  |"
    # the AP ratio is undefined where the peer scored 0 (seed 2): the median of the two defined ones (3.0, 0.5)
    assert lines[3] == "| usiigaci | ours boundary | 3 | 40 | 0.300 / 0.100 / 0.200 | 0.200 | 0.600 / 0.600 / 0.600 | 0.600 | 1.75 | 1.20 |"
    assert lines[4] == "| usiigaci | ours coloring | 1 | 40 | 0.400 | 0.400 | 0.700 | 0.700 |  |  |"
    assert lines[5] == "| usiigaci | ours variant | 2 | 40 | 0.500 / 0.300 | 0.400 | 0.900 / 0.900 | 0.900 |  |  |"
    assert report_peer.table(tmp_path).count("| usiigaci |") == 2  # the main table keeps the seed-0 run


def test_peer_table_without_results_says_not_yet_run(tmp_path):
    assert "| not yet run |" in report_peer.table(tmp_path)


def test_run_spec_needs_a_name_and_a_method():
    peer = _load("peer")  # imports accuracy.py, hence torch and napari_deepcolor
    assert peer.parse_run('c=coloring:"--option semantic_head=false"') == (
        "c", "coloring", ["--option", "semantic_head=false"])
    with pytest.raises(Exception, match="NAME=METHOD"):
        peer.parse_run("coloring")


def test_result_files_name_no_folder_of_the_machine(tmp_path):
    peer = _load("peer")
    repo, work = f"{tmp_path}/repo/", f"{tmp_path}/peer_x"
    places = {repo: "", f"{repo}.venv/bin/python": "python", work: "WORK"}
    result = {"sides": [{"command": f"{repo}.venv/bin/python {repo}benchmarks/accuracy.py "
                                    f"--result {work}/accuracy_b.json", "log": f"{work}/b.log", "steps": 3}]}
    assert peer.portable(result, places) == {"sides": [{
        "command": "python benchmarks/accuracy.py --result WORK/accuracy_b.json", "log": "WORK/b.log", "steps": 3}]}
