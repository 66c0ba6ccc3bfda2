"""Screenshots of the dock widgets in use, for the user guide (docs/images/).

Run under a display (Xvfb is fine)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots.py

It opens the BBBC039 sample, trains a small model for a minute (screenshot
while training), segments the image and tunes the decoding from a partial
annotation (screenshot), exports the labels, and runs the Batch widget on a
few files, one of them broken (screenshot); last, all three widgets docked in
a 1366 x 768 window (screenshot). The model it trains is kept in
``docs/images/`` only for the run (a temporary folder). ``--starter-only``: just the Segment widget
with the nuclei starter on the sample (``08-segment-starter.png``). ``--stacks``: just a z-stack and a
time-lapse made of the sample image (shifted a little per plane or frame), segmented with the nuclei
starter: the z-stack's linked ids in 3D (``09-stack-z.png``) and the time-lapse's Tracks layer
(``10-stack-tracks.png``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
PLUGIN = "napari-deepcolor"


def wait_until(condition, timeout: float = 600.0, app=None) -> None:
    from qtpy.QtWidgets import QApplication

    app = app or QApplication.instance()
    deadline = time.monotonic() + timeout
    while not condition():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() > deadline:
            raise TimeoutError("the widget did not finish in time")


def settle(seconds: float = 0.5) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.instance().processEvents()
        time.sleep(0.02)


def grab(viewer, name: str, *, reset: bool = True) -> Path:
    settle(0.5)
    if reset:
        viewer.reset_view()
    settle(0.5)
    path = OUT / name
    image = viewer.screenshot(canvas_only=False, flash=False)
    from PIL import Image

    Image.fromarray(image).save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT)} {image.shape[1]}x{image.shape[0]}")
    return path


def dock(viewer, name: str):
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return dock_widget, widget


def close_docks(viewer) -> None:
    for name in list(viewer.window.dock_widgets):
        viewer.window.remove_dock_widget(viewer.window.dock_widgets[name])


def segment_with_starter(viewer, image_layer, labels_layer) -> None:
    """The Segment widget as a new user first meets it: the nuclei starter chosen, Segment clicked."""
    labels_layer.visible = False
    _, segment = dock(viewer, "Segment")
    segment.model_choice.setCurrentIndex(segment.model_choice.findData("nuclei"))
    segment.image_combo.value = image_layer.name
    segment.run_button.click()
    wait_until(lambda: segment.worker is None and not segment.decoding)
    settle(0.5)
    grab(viewer, "08-segment-starter.png")
    close_docks(viewer)
    labels_layer.visible = True


def shifted(image, count: int, step: tuple[int, int]) -> np.ndarray:
    """``count`` copies of ``image``, each moved by ``step`` (rows, columns) more than the one before."""
    return np.stack([np.roll(image, (k * step[0], k * step[1]), axis=(0, 1)) for k in range(count)])


def segment_stacks(viewer, image_layer, labels_layer) -> None:
    """A z-stack and a time-lapse made of the sample image, segmented in the Segment widget with the nuclei
    starter: one id per nucleus through the planes (shown in 3D), and tracks through the frames."""
    image = np.asarray(image_layer.data)[:300, :400]
    image_layer.visible = labels_layer.visible = False
    _, segment = dock(viewer, "Segment")
    segment.model_choice.setCurrentIndex(segment.model_choice.findData("nuclei"))

    stack = viewer.add_image(shifted(image, 6, (0, 1)), name="z-stack", scale=(10, 1, 1), colormap="gray")
    segment.image_combo.value = stack.name
    segment.axes_choice.setCurrentIndex(segment.axes_choice.findData("ZYX"))
    segment.run_button.click()
    wait_until(lambda: segment.worker is None and not segment.decoding and segment.measured_count > 0)
    stack.visible = False
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    viewer.camera.angles = (30, -30, 60)  # obliquely: each nucleus a column of one colour
    grab(viewer, "09-stack-z.png", reset=False)

    viewer.dims.ndisplay = 2
    for layer in list(viewer.layers):
        if layer.name.startswith("z-stack"):
            viewer.layers.remove(layer)
    movie = viewer.add_image(shifted(image, 8, (2, 4)), name="time-lapse", colormap="gray")
    segment.image_combo.value = movie.name
    segment.axes_choice.setCurrentIndex(segment.axes_choice.findData("TYX"))
    segment.run_button.click()
    wait_until(lambda: segment.worker is None and not segment.decoding and segment.measured_count > 1
               and segment.tracks_layer() is not None)
    segment.labels_layer().opacity = 0.4
    segment.tracks_layer().tail_width = 3
    viewer.reset_view()
    viewer.dims.set_current_step(0, 7)  # the last frame: each track's tail shows where its nucleus came from
    grab(viewer, "10-stack-tracks.png", reset=False)
    close_docks(viewer)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-seconds", type=float, default=150.0,
                        help="training budget of the model the screenshots use (default 150)")
    parser.add_argument("--starter-only", action="store_true",
                        help="only the Segment widget with a starter model (08-segment-starter.png)")
    parser.add_argument("--stacks", action="store_true",
                        help="only a z-stack and a time-lapse segmented with the nuclei starter (09-, 10-stack-*.png)")
    args = parser.parse_args(argv)

    import napari
    import torch
    import tifffile

    torch.set_num_threads(1)  # shared CPU: one thread is faster than an oversubscribed pool
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="deepcolor-screens-"))
    viewer = napari.Viewer(title="napari-deepcolor", show=True)
    viewer.window._qt_window.resize(1560, 990)
    viewer.open_sample(PLUGIN, "bbbc039-nuclei")
    image_layer = viewer.layers["BBBC039 nuclei"]
    labels_layer = viewer.layers["BBBC039 nuclei annotations"]
    settle(1.0)
    if args.starter_only or args.stacks:
        (segment_stacks if args.stacks else segment_with_starter)(viewer, image_layer, labels_layer)
        viewer.close()
        return 0
    grab(viewer, "01-sample.png")

    # -- train -----------------------------------------------------------------------
    _, train = dock(viewer, "Train")
    train.method.setCurrentIndex(train.method.findData("coloring"))  # the screenshots show deep coloring
    train.patch_size.setValue(128)
    train.batch_size.setValue(4)
    train.minutes.setValue(args.train_seconds / 60)
    train.options_form.editors["halo_margin"].value = 8
    train.learning_rate.setValue(0.003)
    train.net_depth.setValue(3)
    train.preview_seconds.setValue(max(5.0, args.train_seconds / 6))
    train.validate_every.setValue(40)
    model_path = work / "bbbc039.safetensors"
    train.output.set_path(str(model_path))
    train.train_button.click()
    wait_until(lambda: train.job is None or (train.plot.iterations and train.progress.value() > 700
                                             and "training preview" in viewer.layers))
    grab(viewer, "02-training.png")  # the preview's outlines over the annotation
    wait_until(lambda: train.job is None)
    if train.finished is None:
        print("training failed:", train.status.text(), file=sys.stderr)
        return 1
    settle(0.5)
    grab(viewer, "03-trained.png")
    if "training preview" in viewer.layers:
        viewer.layers.remove("training preview")
    close_docks(viewer)

    # -- segment, tune -------------------------------------------------------------------
    labels_layer.visible = False
    _, segment = dock(viewer, "Segment")
    segment.model_edit.set_path(str(model_path))
    segment.image_combo.value = image_layer.name
    segment.run_button.click()
    wait_until(lambda: segment.worker is None)
    partial = np.zeros_like(labels_layer.data)
    partial[40:300, 60:400] = labels_layer.data[40:300, 60:400]
    viewer.add_labels(partial, name="my annotation (part)", visible=False)
    segment.truth_combo.value = "my annotation (part)"
    viewer.layers.selection.active = segment.labels_layer()
    segment.tune_button.click()
    wait_until(lambda: segment.tune_worker is None and not segment.decoding)
    settle(0.5)
    grab(viewer, "04-segment-tuned.png")
    segment.show_preview.setChecked(True)
    wait_until(lambda: bool(segment.preview_layer_names))
    segment.labels_layer().visible = False
    grab(viewer, "05-segment-preview.png")
    segment.show_preview.setChecked(False)
    segment.labels_layer().visible = True
    segment.export_labels(str(work / "bbbc039_labels.tif"))
    viewer.layers.remove("my annotation (part)")  # the preview layers went when unticked

    # -- batch --------------------------------------------------------------------------
    close_docks(viewer)
    source = work / "plate"
    source.mkdir()
    shared = ROOT.parent / "shared" / "data" / "bbbc039" / "images"
    files = sorted(shared.glob("*.tif"))[1:5] if shared.is_dir() else []
    for i, path in enumerate(files):
        tifffile.imwrite(source / f"well_{i + 1:02d}.tif", tifffile.imread(path))
    if not files:
        from napari_deepcolor import synthetic

        for i in range(4):
            tifffile.imwrite(source / f"well_{i + 1:02d}.tif", synthetic.nuclei((520, 696), count=90, seed=i)[0])
    (source / "well_99_truncated.tif").write_bytes(b"II*\x00 this file was cut short")
    _, batch = dock(viewer, "Batch")
    batch.input.set_path(str(source))
    batch.output.set_path(str(work / "plate_labels"))
    batch.model.set_path(str(model_path))
    batch.use_segment_values()  # the values tuned in the Segment widget
    batch.run_button.click()
    wait_until(lambda: batch.worker is None)
    first = work / "plate_labels" / "well_01.tif"
    if first.is_file():
        for layer in list(viewer.layers):
            layer.visible = False
        viewer.add_image(tifffile.imread(source / "well_01.tif"), name="well_01")
        viewer.add_labels(tifffile.imread(first), name="well_01 labels (batch)", opacity=0.6)
    grab(viewer, "06-batch.png")

    # -- all three docked on a laptop screen ----------------------------------------------
    dock(viewer, "Train")
    dock(viewer, "Segment")
    viewer.window._qt_window.resize(1366, 768)
    settle(1.0)
    grab(viewer, "07-laptop.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
