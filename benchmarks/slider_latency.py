"""Slider latency of the Segment widget: from a decode-parameter change to the labels layer updated.

Run under a display (Xvfb is fine)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/slider_latency.py

A 1024 x 1024 image with a synthetic cached network output (the network is
not what is measured: a slider never runs it) is put into a real Segment
widget in a real napari viewer. Each repeat moves one slider and waits until
the widget has put the new labels into the layer (``layer.data = ...``, which
includes napari's own update of the layer), then until the canvas has been
drawn (under Xvfb that is software OpenGL: a real display draws faster).
Repeats are spaced beyond the throttle interval, so each one is the
throttle's leading edge; the "drag" column sends 10-20 distinct values 10 ms
apart and times from the last value to its labels shown (the throttle's
trailing edge). Prints a markdown table of medians (and 90th percentiles) in
milliseconds. "decode" is the library's own decode time (in the GUI thread
for cheap parameters, in a worker otherwise; see the Segment widget).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

SIZE = 1024


def coloring_output(labels: np.ndarray, n_colors: int = 9, seed: int = 0) -> np.ndarray:
    """Softmax-like colour probabilities (C, H, W) whose argmax colours the objects (as a trained net would)."""
    rng = np.random.default_rng(seed)
    colour = np.where(labels > 0, 1 + (labels % (n_colors - 1)), 0)
    logits = rng.normal(0, 0.3, (n_colors,) + labels.shape).astype(np.float32)
    np.put_along_axis(logits, colour[None].astype(np.int64), 3.0, axis=0)
    logits -= logits.max(axis=0, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=0, keepdims=True)
    return probabilities.astype(np.float32)


def boundary_output(labels: np.ndarray) -> np.ndarray:
    from skimage.segmentation import find_boundaries

    boundary = find_boundaries(labels, mode="inner") & (labels > 0)
    interior = (labels > 0) & ~boundary
    out = np.stack([~(labels > 0), interior, boundary]).astype(np.float32)
    return 0.9 * out + 0.1 / 3


def process_until(condition, timeout: float = 30.0) -> None:
    from qtpy.QtWidgets import QApplication

    app, deadline = QApplication.instance(), time.perf_counter() + timeout
    while not condition():
        app.processEvents()
        time.sleep(0.001)  # an idle event loop waits without the GIL; a busy poll would starve the worker
        if time.perf_counter() > deadline:
            raise TimeoutError("no labels update")


def percentile(values, q):
    return float(np.percentile(values, q))


def measure(widget, viewer, name: str, values: list, repeats: int, draws: list) -> dict:
    slider = widget.sliders.sliders[name]
    update, drawn, decode = [], [], []
    for i in range(repeats):
        value = values[(i + 1) % len(values)]  # never the current value: each repeat changes it
        process_until(lambda: not widget.decoding)
        time.sleep(0.06)  # beyond the throttle interval: this change is a leading edge
        shown, draws_before = widget.decode_count, len(draws)
        start = time.perf_counter()
        slider.value = value
        process_until(lambda: widget.decode_count > shown)
        shown_at = widget.labels_layer().metadata["shown_at"]
        update.append(shown_at - start)
        decode.append(widget.last_decode_seconds)
        try:
            process_until(lambda: any(t > shown_at for t in draws[draws_before:]), timeout=2.0)
            drawn.append(next(t for t in draws[draws_before:] if t > shown_at) - start)
        except TimeoutError:
            pass
    return {"update": update, "drawn": drawn, "decode": decode}


def measure_drag(widget, name: str, values: list, repeats: int) -> list:
    from qtpy.QtWidgets import QApplication

    slider, times = widget.sliders.sliders[name], []
    for repeat in range(repeats):
        process_until(lambda: not widget.decoding)
        time.sleep(0.1)
        for value in (values if repeat % 2 == 0 else values[::-1]):  # back and forth: the end value is new
            last = time.perf_counter()
            slider.value = value
            end = time.perf_counter() + 0.01
            while time.perf_counter() < end:
                QApplication.instance().processEvents()
                time.sleep(0.001)
        final = dict(widget.sliders.values())  # values differ along the drag: shown only after this
        process_until(lambda: widget.labels_layer().metadata.get("shown") == final)
        times.append(widget.labels_layer().metadata["shown_at"] - last)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)

    import napari

    from napari_deepcolor import synthetic
    from napari_deepcolor.checkpoint import new_model
    from napari_deepcolor.inference import Prediction
    from napari_deepcolor._napari.layers import LayerInput

    image, labels = synthetic.nuclei((SIZE, SIZE), count=700, radius=(8, 14), seed=0)
    viewer = napari.Viewer(show=True)
    viewer.add_image(image, name="image")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepcolor", "Segment")
    draws: list[float] = []
    try:  # napari's canvas (private): its draw events tell when the new labels are on screen
        viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(lambda e: draws.append(time.perf_counter()))
    except AttributeError:
        pass

    original_show = widget._show_labels

    def show_and_mark(labels_, seconds=float("nan")):  # remember which values the layer shows (drag row)
        original_show(labels_, seconds)
        widget.labels_layer().metadata.update(shown=dict(widget.sliders.values()), shown_at=time.perf_counter())

    widget._show_labels = show_and_mark

    sizes, interiors = [20, 60, 150, 40], [0.5, 0.3, 0.7, 0.4]
    cases = {  # row name: (method, its options, cached output, sliders and their values)
        "coloring": ("coloring", {"semantic_head": False}, coloring_output(labels),
                     {"size_threshold": sizes, "merge_radius": [0, 4, 8, 2]}),
        "coloring + semantic head": ("coloring", {"semantic_head": True},
                                     np.concatenate([coloring_output(labels), boundary_output(labels)]),
                                     {"size_threshold": sizes, "interior_threshold": interiors}),
        "boundary": ("boundary", {}, boundary_output(labels), {"size_threshold": sizes, "interior_threshold": interiors}),
    }
    drags = {"size_threshold": list(range(21, 400, 19)), "merge_radius": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
             "interior_threshold": [0.3, 0.35, 0.4, 0.45, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8]}
    rows = []
    for row, (method, options, output, sliders) in cases.items():
        model = new_model(method, options, {"depth": 2, "width": 8}, in_channels=1)
        widget.model, widget.model_path = model, None
        widget.sliders.set_parameters(model.method.decode_parameters)
        widget.sliders.set_values(model.decode_parameters())
        widget.prediction = Prediction(model, output)
        widget.source = LayerInput(image, False, "image", (1.0, 1.0), (0.0, 0.0))
        widget.labels_layer_name = f"{row} labels"
        widget._show_labels(widget.prediction.decode().labels)
        process_until(lambda: True)
        for name, values in sliders.items():
            result = measure(widget, viewer, name, values, args.repeats, draws)
            drag = measure_drag(widget, name, drags[name], max(3, args.repeats // 3))
            rows.append((row, name, result, drag))

    print(f"\nSlider latency, {SIZE}x{SIZE} image, {int(labels.max())} objects, median (p90) in ms, "
          f"{args.repeats} repeats\n")
    print("| method | slider | decode | change → labels layer updated | → canvas drawn | "
          "drag: last value → its labels shown |")
    print("|---|---|---|---|---|---|")
    for method, name, result, drag in rows:
        def cell(values):
            if not values:
                return "n/a"
            ms = [1000 * v for v in values]
            return f"{statistics.median(ms):.0f} ({percentile(ms, 90):.0f})"
        print(f"| {method} | {name} | {cell(result['decode'])} | {cell(result['update'])} | {cell(result['drawn'])} "
              f"| {cell(drag)} |")
    process_until(lambda: not widget.decoding)  # let the last worker finish before the viewer goes
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
