"""Layer data to training samples: partial annotations, shapes, stacks (no viewer needed)."""

import numpy as np
import pytest

from napari_deepcolor import DeepColorError, synthetic
from napari_deepcolor._napari.layers import LayerInput, training_samples, tuning_pairs


def layer(data, rgb=False, name="img"):
    return LayerInput(np.asarray(data), rgb, name, (1,) * 2, (0,) * 2)


def test_a_partial_annotation_trains_on_the_box_around_it():
    image, labels = synthetic.nuclei((120, 150), count=15, seed=1)
    partial = labels.copy()
    partial[:, 70:] = 0
    box = training_samples([(layer(image), partial, "l")], "box")
    whole = training_samples([(layer(image), partial, "l")], "whole")
    assert box[0].shape[1] <= 70 and whole[0].shape == (120, 150)
    assert box[0].num_objects == whole[0].num_objects


def test_stack_planes_without_annotation_are_skipped_and_rgb_works():
    image, labels = synthetic.nuclei((64, 64), count=6, seed=2)
    stack = np.stack([image, image, image])
    stack_labels = np.stack([labels, np.zeros_like(labels), labels])
    assert len(training_samples([(layer(stack), stack_labels, "l")])) == 2
    rgb = np.repeat(image[..., None], 3, axis=-1)
    assert training_samples([(layer(rgb, rgb=True), labels, "l")])[0].num_channels == 3


def test_mismatched_or_empty_labels_say_what_is_wrong():
    image = np.zeros((40, 50), np.float32)
    with pytest.raises(DeepColorError, match="transposed"):
        training_samples([(layer(image), np.ones((50, 40), np.int32), "l")])
    with pytest.raises(DeepColorError, match="empty"):
        training_samples([(layer(image), np.zeros((40, 50), np.int32), "l")])
    with pytest.raises(DeepColorError, match="no training data"):
        training_samples([])


def test_tuning_scores_only_the_annotated_box():
    output = np.random.default_rng(0).random((9, 2, 60, 70)).astype(np.float32).transpose(1, 0, 2, 3)
    truth = np.zeros((2, 60, 70), np.int32)
    truth[1, 10:20, 30:45] = 1
    pairs = tuning_pairs(output, truth)
    assert len(pairs) == 1 and pairs[0][0].shape == (9, 10, 15) and pairs[0][1].shape == (10, 15)
    with pytest.raises(DeepColorError, match="shape"):
        tuning_pairs(output, truth[0])


def test_a_labels_layer_painted_with_one_label_is_refused_unless_its_pieces_are_objects():
    image, labels = synthetic.nuclei((120, 150), count=15, seed=1)
    painted = (labels > 0).astype(np.int32)  # every nucleus painted with label 1
    with pytest.raises(DeepColorError, match=r"the value 1 covers \d+ separate pieces.*Labels are masks"):
        training_samples([(layer(image), painted, "l")], "whole")
    sample, = training_samples([(layer(image), painted, "l")], "whole", labels_are_masks=True)
    assert sample.num_objects > 8
