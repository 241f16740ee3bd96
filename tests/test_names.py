"""Class names travel from folders and shard manifests into the data spec, checkpoints and pictures."""
import numpy as np
from PIL import Image

from mixgan.data.base import DataSpec


def class_folder(root, names=("cat", "dog"), per=6):
    g = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per):
            Image.fromarray(g.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_data_spec_carries_class_names_and_old_records_read_as_none():
    spec = DataSpec("folder", (1, 8, 8), 2, class_names=("cat", "dog"))
    assert DataSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["class_names"] == ["cat", "dog"]
    old = {"name": "digits", "shape": [1, 8, 8], "num_classes": 10, "kind": "image", "cond_dim": 0}
    assert DataSpec.from_dict(old).class_names == ()


def test_folders_and_their_shards_name_their_classes(tmp_path):
    from mixgan.data.folder import image_folder
    from mixgan.data.pack import pack_dataset, pack_folder
    from mixgan.data.shards import shard_dataset

    root = class_folder(tmp_path / "photos")
    data = image_folder(root)
    assert data.class_names == ("cat", "dog") and data.spec().class_names == ("cat", "dog")
    pack_folder(root, tmp_path / "packed")
    assert shard_dataset(tmp_path / "packed").class_names == ("cat", "dog")
    pack_dataset(data, tmp_path / "again")
    assert shard_dataset(tmp_path / "again").spec().class_names == ("cat", "dog")


def test_row_labels_and_confusion_axes_use_names(tmp_path):
    import torch

    from mixgan.viz import confusion_plot, image_grid, label_rows, name_classes

    assert name_classes(["class 1", "Gaussian 3", "class 7"], ("cat", "dog")) == ["class dog", "Gaussian 3", "class 7"]
    grid = image_grid(torch.zeros(4, 1, 8, 8), 2)
    labelled = label_rows(grid, ["class cat", "class dog"])
    assert labelled.shape[0] == grid.shape[0] and labelled.shape[1] > grid.shape[1]
    assert (labelled[:, : labelled.shape[1] - grid.shape[1]] < 128).any()  # the names are drawn
    confusion_plot(np.eye(2, dtype=int), tmp_path / "c.png", xticklabels=["cat", "dog"])
    assert Image.open(tmp_path / "c.png").size[0] > 50
