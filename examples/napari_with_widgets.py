"""Open napari with the plugin's Train, Segment and Batch widgets docked and an annotated sample loaded.

What it shows: the plugin from a script: ``viewer.open_sample`` with one of the plugin's samples
(an Image layer and its Labels layer) and ``viewer.window.add_plugin_dock_widget`` for each widget,
the same as *File > Open Sample > DeepColor* and *Plugins > DeepColor*. From there, follow
docs/user-guide.md: press **Train** in the Train widget (the sample is already paired with its
labels), then **Segment** and drag the sliders.

How long: napari starts in a few seconds; it stays open until you close the window. ``--smoke``
builds the viewer, docks the widgets, loads the sample and exits (used by the tests; it needs a
display, e.g. ``xvfb-run -a python examples/napari_with_widgets.py --smoke`` on a headless machine).

    python examples/napari_with_widgets.py
    python examples/napari_with_widgets.py --sample synthetic-worms
    python examples/napari_with_widgets.py --image my_image.tif --labels my_labels.tif
"""

from __future__ import annotations

import argparse
import sys

PLUGIN = "napari-deepcolor"
WIDGETS = ("Train", "Segment", "Batch")
SAMPLES = ("bbbc039-nuclei", "synthetic-nuclei", "synthetic-bacteria", "synthetic-worms", "synthetic-leaves")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", choices=SAMPLES, default="bbbc039-nuclei", help="the plugin sample to open")
    parser.add_argument("--image", default=None, help="open this image file instead of a sample")
    parser.add_argument("--labels", default=None, help="with --image: its label file, opened as a Labels layer")
    parser.add_argument("--smoke", "--no-show", dest="smoke", action="store_true",
                        help="build the viewer and exit without showing it (for tests)")
    return parser.parse_args(argv)


def build_viewer(args, *, show: bool = True):
    """A viewer with the sample (or the given files) loaded and the three widgets docked."""
    import napari

    viewer = napari.Viewer(title="napari-deepcolor", show=show)
    if args.image:
        viewer.open(args.image)
        if args.labels:
            viewer.open(args.labels, layer_type="labels")
    else:
        viewer.open_sample(PLUGIN, args.sample)
    for name in WIDGETS:
        viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=name != WIDGETS[0])
    return viewer


def main(argv=None) -> int:
    args = parse_args(argv)
    viewer = build_viewer(args, show=not args.smoke)
    layers = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in viewer.layers)
    docked = ", ".join(viewer.window.dock_widgets)
    print(f"layers: {layers}\nwidgets: {docked}")
    if args.smoke:
        viewer.close()
        return 0
    import napari

    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
