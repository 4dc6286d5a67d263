"""Training on annotations placed in the volume: split, label views, sampling, a short run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlpipe.annotations.cvat.write import write_cvat_xml
from dlpipe.annotations.placement import place_annotations
from dlpipe.errors import UserError
from dlpipe.stores.annotations import SliceView, split_slices, spread, test_slices
from dlpipe.training import PatchDataset, train
from dlpipe.training.sparse import SliceSampler
from dlpipe.training.stores import open_source

SHAPE = (12, 16, 16)


def place(store: Path, tmp_path: Path, planes: dict[tuple[str, int], np.ndarray]) -> Path:
    """Place label images (values 0, 1, 2) at (axis, index) through a real CVAT export."""
    images = []
    for (axis, index), lab in planes.items():
        shapes = [
            {"type": "mask", "label": name, "mask": lab == v}
            for v, name in ((1, "fibre"), (2, "pore"))
            if (lab == v).any()
        ]
        h, w = lab.shape
        images.append((f"scan_{axis}{index:04d}.png", w, h, shapes))
    xml = write_cvat_xml(tmp_path / "annotations.xml", ["fibre", "pore"], images)
    place_annotations(xml, store, classes=["fibre", "pore"], empty="background")
    return store


def plane(labels: np.ndarray, axis: str, i: int) -> np.ndarray:
    return {"z": labels[i], "y": labels[:, i], "x": labels[:, :, i]}[axis]


@pytest.fixture()
def annotated(tiny_store, make_volume, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """12x16x16 volume; z 2, 5, 8, 10 and y 3 annotated with the true labels."""
    image, labels = make_volume(SHAPE)
    store = tiny_store(image=image, labels=labels)
    at = [("z", 2), ("z", 5), ("z", 8), ("z", 10), ("y", 3)]
    place(store, tmp_path, {k: plane(labels, *k) for k in at})
    return store, labels


def test_spread_and_split_by_hand() -> None:
    assert spread(10, 2) == [2, 7]
    assert spread(4, 1) == [2]
    # 5 slices ordered z2 z5 z8 z10 y3: test 1 (centre, z8); val 1 of the other 4 (z10)
    split = split_slices({"z": [2, 5, 8, 10], "y": [3]}, val_fraction=0.2)
    assert split == {
        "train": {"z": [2, 5], "y": [3]},
        "val": {"z": [10]},
        "test": {"z": [8]},
    }
    # the test slices do not depend on the validation fraction
    assert split_slices({"z": [2, 5, 8, 10], "y": [3]}, val_fraction=0.5)["test"] == {"z": [8]}
    assert split_slices({"z": [4]}) == {"train": {"z": [4]}, "val": {}, "test": {}}
    assert split_slices({"z": [4, 9]}) == {"train": {"z": [4]}, "val": {}, "test": {"z": [9]}}
    assert test_slices({"slices": {"z": [1, 2, 3]}, "test": {"z": [1]}}) == {"z": [1]}


def test_placement_records_the_test_slices(annotated) -> None:
    store, _ = annotated
    meta = json.loads((store / "zarr.json").read_text())["attributes"]["dlpipe"]
    assert meta["annotations"]["slices"] == {"z": [2, 5, 8, 10], "y": [3]}
    assert meta["annotations"]["test"] == {"z": [8]}


def test_slice_view_keeps_only_its_slices() -> None:
    labels = np.full((4, 5, 6), 255, np.uint8)
    labels[1] = 1
    labels[:, 2, :] = 2
    view = SliceView(labels, keep={"y": [2]}, drop={"z": [1]})
    out = view[:]
    expect = np.full((4, 5, 6), 255, np.uint8)
    expect[:, 2, :] = 2
    expect[1] = 255  # the line the kept y-slice shares with the dropped z-slice
    np.testing.assert_array_equal(out, expect)
    np.testing.assert_array_equal(view[1:3, 2, 0:2], [[255, 255], [2, 2]])
    np.testing.assert_array_equal(view[3, 2:4, 4], [2, 255])


def test_source_splits_annotated_slices_and_hides_held_out_ones(annotated) -> None:
    store, labels = annotated
    src = open_source(store, labels="annotations", val_fraction=0.2)
    assert src.kind == "annotations"
    assert src.classes == ["background", "fibre", "pore"]
    assert src.extra["split"]["test"] == {"z": [8]}
    assert src.extra["axes"] == ["z", "y"]
    _, train_view = src.open("train")
    seen = np.asarray(train_view[:])
    for z in (8, 10):  # test and validation slices never read as training labels
        assert (seen[z] == 255).all()
    np.testing.assert_array_equal(seen[2], labels[2])
    y3 = labels[:, 3].copy()
    y3[[8, 10]] = 255
    np.testing.assert_array_equal(seen[:, 3], y3)
    _, val_view = src.open("val")
    assert set(np.nonzero((np.asarray(val_view[:]) != 255).any(axis=(1, 2)))[0]) == {10}
    # the placed annotations are found when the dense label image is missing
    src2 = open_source(store, labels="nothing-here")
    assert src2.kind == "annotations" and src2.extra["labels"] == "annotations"
    with pytest.raises(UserError, match="no annotated training slice on the axes"):
        open_source(store, labels="annotations", axes=["x"])


def test_y_slice_gives_xz_patches_with_its_labels(annotated) -> None:
    store, labels = annotated
    image = np.asarray(__import__("zarr").open_group(str(store), mode="r")["0"])
    src = open_source(store, labels="annotations", axes=["y"])
    _, view = src.open()
    sampler = SliceSampler(view, {"y": [3]}, {}, SHAPE, "2.5d", (8, 8), 0.0, 3, 255)
    assert sampler.items == [("y", 3)]
    specs = sampler.epoch(20, None, np.random.default_rng(0))
    assert {s.axis for s in specs} == {"y"} and {s.z for s in specs} == {3}
    ds = PatchDataset(src, specs, "2.5d", (8, 8), context=3, augment=None)
    lo, hi = src.p0_1, src.p99_9
    for spec in specs[:5]:
        img, mask, (_i, r, c) = ds.read(spec)
        assert img.shape == (3, 8, 8) and mask.shape == (8, 8)
        # rows are z, columns x; the channels are y-slices 2, 3, 4 of the scan
        want = (image[r : r + 8, 2:5, c : c + 8].transpose(1, 0, 2) - lo) / (hi - lo)
        np.testing.assert_allclose(img, want.astype(np.float32), rtol=1e-5, atol=1e-6)
        truth = labels[r : r + 8, 3, c : c + 8].copy()
        truth[(np.arange(r, r + 8) == 8) | (np.arange(r, r + 8) == 10)] = 255
        np.testing.assert_array_equal(mask, truth)


def test_held_out_slices_are_never_sampled(annotated) -> None:
    store, _ = annotated
    for mode, patch in (("2d", (8, 8)), ("3d", (4, 8, 8))):
        src = open_source(store, labels="annotations")
        _, view = src.open()
        split = src.extra["split"]
        sampler = SliceSampler(view, split["train"], split["val"], SHAPE, mode, patch, 0.5, 3, 255)
        sampler.rare = [2]
        specs = sampler.epoch(200, None, np.random.default_rng(1))
        ds = PatchDataset(src, specs, mode, patch)
        assert {(s.axis, s.z) for s in specs if mode == "2d"} <= {("z", 2), ("z", 5), ("y", 3)}
        for spec in specs[:60]:
            _, mask, (z, _y, _x) = ds.read(spec)
            if mode == "3d":  # the box holds a training slice; no held-out voxel is labelled
                assert (mask != 255).any()
                zs = np.arange(z, z + 4)
                assert (mask[(zs == 8) | (zs == 10)] == 255).all()
        val = sampler.grid()
        assert val and {(s.axis, s.part) for s in val} == {("z", "val")}
        _, vmask, (vz, _, _) = ds.read(val[0])
        if mode == "3d":
            assert vz <= 10 < vz + 4
            assert set(np.unique(vmask[np.arange(vz, vz + 4) != 10])) == {255}
        else:
            assert val[0].z == 10 and (vmask != 255).all()


def test_short_run_records_the_split(annotated, tiny_params, tmp_path: Path) -> None:
    store, _ = annotated
    params = tiny_params(labels="annotations", input="2.5d", oversample=0.5)
    card = train(store, tmp_path / "model", params)
    assert card["split"]["kind"] == "annotated slices"
    assert card["split"]["test"] == {"z": [8]}
    assert card["split"]["val"] == {"z": [10]}
    assert card["split"]["train"] == {"z": [2, 5], "y": [3]}
    assert card["val_mean_jaccard"] is not None
    card = train(store, tmp_path / "m2", tiny_params(labels="annotations", max_images=1))
    assert card["params"]["max_images"] == 1
    assert card["split"]["train"] == {"z": [5]}  # the middle one of z2 z5 y3


def test_max_images_keeps_evenly_spread_placed_slices(annotated) -> None:
    store, labels = annotated
    # training slices z2 z5 y3 (ordered z, y, x): 2 of them are the first and the last
    src = open_source(store, labels="annotations", max_images=2)
    assert src.extra["split"]["train"] == {"z": [2], "y": [3]}
    assert src.extra["split"]["val"] == {"z": [10]} and src.extra["annotated"] == 3
    _, view = src.open("train")
    z5 = view[5]  # a training slice not kept reads as not annotated, but where y3 crosses it
    assert np.array_equal(z5[3], labels[5, 3]) and (np.delete(z5, 3, axis=0) == 255).all()
    assert np.array_equal(view[2], labels[2])
    with pytest.raises(UserError, match="max_images is 4 but only 3 annotated slices train"):
        open_source(store, labels="annotations", max_images=4)


def test_placed_slices_of_a_volume_with_dense_labels_split_by_its_slabs(annotated) -> None:
    """A truth tiled beside the annotations is scored on the test slab: no annotated slice
    there trains; the val slab's validate (the last ones when it has none)."""
    import zarr

    store, _ = annotated
    root = zarr.open_group(str(store), mode="r+")
    attrs = dict(root.attrs["dlpipe"])
    attrs.update(
        labels={"name": "phases"}, split={"train": [0, 8], "val": [8, 10], "test": [10, 12]}
    )
    root.attrs["dlpipe"] = attrs
    split = open_source(store, labels="annotations").extra["split"]
    assert split == {"train": {"z": [2, 5], "y": [3]}, "val": {"z": [8]}, "test": {"z": [10]}}
    attrs["split"] = {"train": [0, 12], "val": [12, 12], "test": [12, 12]}
    root.attrs["dlpipe"] = attrs  # no slice in the val slab: the last one (y3) validates
    split = open_source(store, labels="annotations").extra["split"]
    assert split == {"train": {"z": [2, 5, 8, 10]}, "val": {"y": [3]}, "test": {}}


def test_cli_names_the_classes_after_the_config_not_cvat(
    make_volume, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The placed annotations call class 0 CVAT's `background`; the model, its metrics and
    the predictions use the config's `matrix` (evaluation.classes), as the workflow trains."""
    import zarr

    from dlpipe.cli import main
    from dlpipe.training.labelled import write_labelled_volume
    from dlpipe.training.stores import label_classes

    image, labels = make_volume(SHAPE)
    split = {"train": [0, 8], "val": [9, 10], "test": [11, 12], "gap": 0}
    store = write_labelled_volume(tmp_path / "vol.zarr", image, labels, split=split)
    place(store, tmp_path, {("z", z): labels[z] for z in (2, 5, 8, 10)})
    assert label_classes(zarr.open_group(str(store), mode="r"), "annotations") == [
        "background",
        "fibre",
        "pore",
    ]
    cfg = json.dumps({"results": str(tmp_path / "results"), "tracking": {"enabled": False}})
    sets = {"labels": "annotations", "steps_per_epoch": 1, "batch_size": 1, "patch_size": [8, 8]}
    sets |= {"architecture.depth": 2, "architecture.base_filters": 2, "workers": 0, "device": "cpu"}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    out = tmp_path / "m"
    with pytest.raises(SystemExit) as done:
        main(["--config-json", cfg, "train", str(store), "--out", str(out), "--epochs", "1", *args])
    assert done.value.code == 0, capsys.readouterr().err
    card = json.loads((out / "card.json").read_text())
    assert card["classes"] == ["matrix", "fibre", "pore"]
