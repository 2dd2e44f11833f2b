"""The images a run trains on: generalization subsets A and B and their comparison images."""

import torch
from train_helpers import tiny_config

from dsm_core.data import splits


def test_subsets_are_first_and_last_images():
    a = splits.subset_indices(10, "A", 3)
    b = splits.subset_indices(10, "B", 3)
    assert a.tolist() == [0, 1, 2] and b.tolist() == [7, 8, 9]
    assert len(splits.subset_indices(10, "all", None)) == 10
    data = splits.load_training_data(
        tiny_config(**{"data.subset": "B", "data.subset_size": 5}).data, 16
    )
    full = splits.load_split(tiny_config().data, 16, "train")
    assert len(data) == 5
    assert torch.equal(data.batch([0, 4]), full.batch([len(full) - 5, len(full) - 1]))


def test_generalization_images():
    assert splits.generalization_image_indices(10, 3, "A").tolist() == [0, 1, 2]
    assert splits.generalization_image_indices(10, 3, "B").tolist() == [9, 8, 7]
    assert splits.generalization_image_indices(10, 8, "B", max_images=2).tolist() == [9, 8]
