"""All three widgets docked fit a laptop screen; their controls say what they are in plain words."""

from qtpy.QtWidgets import QApplication, QScrollArea

from .conftest import add_widget

LAPTOP = (1366, 768)


def test_the_three_widgets_docked_fit_a_1366_x_768_screen(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-deepcolor", "synthetic-nuclei")
    widgets = [add_widget(viewer, name) for name in ("Train", "Segment", "Batch")]
    window = viewer.window._qt_window
    window.resize(*LAPTOP)
    QApplication.processEvents()
    minimum = window.minimumSizeHint().expandedTo(window.minimumSize())
    assert minimum.width() <= LAPTOP[0] and minimum.height() <= LAPTOP[1], minimum
    assert (window.width(), window.height()) == LAPTOP
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.width() >= LAPTOP[0] // 3 and canvas.height() >= LAPTOP[1] // 2  # the image keeps room
    train_scroll = widgets[0].findChild(QScrollArea).verticalScrollBar()
    assert train_scroll.maximum() > 0  # taller than its dock here: every control is reached by scrolling


def test_options_and_sliders_are_plain_words_with_units_and_the_symbol_in_the_tooltip(make_napari_viewer,
                                                                                     tiny_model_path):
    viewer = make_napari_viewer()
    train = add_widget(viewer, "Train")
    train.method.setCurrentIndex(train.method.findData("coloring"))
    halo = train.options_form.editors["halo_margin"]
    assert halo.label == "Halo margin (px)" and "<i>m</i>" in halo.tooltip and "ring (halo)" in halo.tooltip
    assert train.options_form.editors["n_colors"].label == "Number of colours"
    assert "<i>μ</i>" in train.options_form.editors["halo_weight"].tooltip
    assert train.options_form.editors["color_choice"].choices == ("paper", "distinct")  # documented choices
    segment = add_widget(viewer, "Segment")
    segment.model_edit.set_path(str(tiny_model_path))
    size = segment.sliders.sliders["size_threshold"]
    assert size.label == "Size threshold (px)" and "<i>τ</i>" in size.tooltip
    assert "smaller than this many pixels become background" in size.tooltip
    region = train.region
    region.setCurrentIndex(1)
    assert region.currentText() in region.toolTip()  # a text shown truncated is readable in the tooltip


def test_no_tooltip_shows_markup(make_napari_viewer):
    """Every tooltip of the three widgets, for every method's options, and every method's sliders: plain words."""
    from qtpy.QtWidgets import QWidget

    from napari_deepcolor._napari.forms import DecodeSliders
    from napari_deepcolor.methods import get_method, method_names
    from napari_deepcolor.plaintext import MARKUP

    viewer = make_napari_viewer()
    widgets = [add_widget(viewer, name) for name in ("Train", "Segment", "Batch")]
    train = widgets[0]
    tips = {}
    for name in method_names():
        train.method.setCurrentIndex(train.method.findData(name))
        for widget in widgets:
            for child in widget.findChildren(QWidget):
                if child.toolTip():
                    tips[f"{name}: {child.objectName() or type(child).__name__}: {child.toolTip()[:40]}"] = \
                        child.toolTip()
    sliders = DecodeSliders([p for name in method_names() for p in get_method(name).decode_parameters])
    tips.update({f"slider {s.name}": s.tooltip for s in sliders})
    assert len(tips) > 30
    assert any("good_seed_iou" in tip for tip in tips.values())  # the metric method's options were shown
    shown = {where: MARKUP.findall(tip) for where, tip in tips.items() if MARKUP.search(tip)}
    assert not shown, shown


def test_pixel_sliders_span_what_the_models_objects_make_useful(make_napari_viewer):
    """The nuclei starter's objects are 28 px across (627 px in area): the size threshold slider ends at
    700 px, not at the declared 5000, and in both the Segment and the Batch widget."""
    import math

    from napari_deepcolor.checkpoint import read_model_config

    config = read_model_config("nuclei")
    area = math.pi * config["object_scale"]["object_diameter"] ** 2 / 4
    viewer = make_napari_viewer()
    segment = add_widget(viewer, "Segment")
    assert segment.load_model("nuclei")
    size = segment.sliders.sliders["size_threshold"]
    assert size.min == 0 and area <= size.max <= 1.5 * area < 5000  # 700 for 28 px nuclei
    assert size.value == config["decode_defaults"]["size_threshold"]  # the starter's tuned value
    assert "px across" in size.tooltip and "declared range 0 to 5000" in size.tooltip
    end = size.max
    segment.sliders.set_values({"size_threshold": 1200})  # a tuned or remembered value past the end widens it
    assert size.value == 1200 and size.max >= 1200
    batch = add_widget(viewer, "Batch")
    assert batch.load_model("nuclei")
    assert batch.sliders.sliders["size_threshold"].max == end
