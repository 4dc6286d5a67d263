"""The NGFF attribute builder: one palette, class names as label properties."""

from __future__ import annotations

from dlpipe.stores import ngff


def test_palette_colours() -> None:
    assert ngff.rgba(0) == [0, 0, 0, 0]
    assert ngff.rgba(1) == [31, 119, 180, 255]
    assert ngff.rgba(2) == [255, 127, 14, 255]
    assert ngff.rgba(10) == [23, 190, 207, 255]
    assert ngff.rgba(11) == ngff.rgba(1)  # cycles after 10 colours


def test_image_attrs_two_levels() -> None:
    attrs = ngff.image_attrs("vol", 2, [0.5, 1.0, 1.0], "micrometer", "0.5")
    ms = attrs["ome"]["multiscales"][0]
    assert attrs["ome"]["version"] == "0.5" and ms["name"] == "vol" and ms["type"] == "mean"
    assert ms["axes"][0] == {"name": "z", "type": "space", "unit": "micrometer"}
    assert ms["datasets"][0] == {
        "path": "0",
        "coordinateTransformations": [{"type": "scale", "scale": [0.5, 1.0, 1.0]}],
    }
    assert ms["datasets"][1]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 2.0, 2.0]},
        {"type": "translation", "translation": [0.25, 0.5, 0.5]},
    ]
    v04 = ngff.image_attrs("vol", 1, [1, 1, 1], "nanometer", "0.4")
    assert v04["multiscales"][0]["version"] == "0.4" and "ome" not in v04


def test_label_image_with_classes_has_properties_and_colours() -> None:
    attrs = ngff.label_image_attrs(
        "phases", 1, [2.0, 2.0, 2.0], "micrometer", "0.5", classes=["matrix", "fibre", "pore"]
    )
    label = attrs["ome"]["image-label"]
    assert label["source"] == {"image": "../../"}
    assert label["colors"] == [
        {"label-value": 0, "rgba": [0, 0, 0, 0]},
        {"label-value": 1, "rgba": [31, 119, 180, 255]},
        {"label-value": 2, "rgba": [255, 127, 14, 255]},
    ]
    assert label["properties"] == [
        {"label-value": 0, "name": "matrix"},
        {"label-value": 1, "name": "fibre"},
        {"label-value": 2, "name": "pore"},
    ]
    ms = attrs["ome"]["multiscales"][0]
    assert ms["type"] == "mode" and ms["axes"][2]["unit"] == "micrometer"


def test_label_image_without_classes_or_unit() -> None:
    attrs = ngff.label_image_attrs("phases", 1, [1.0, 1.0], None, "0.5", [0, 3])
    label = attrs["ome"]["image-label"]
    assert "properties" not in label
    assert [c["label-value"] for c in label["colors"]] == [0, 3]
    axes = attrs["ome"]["multiscales"][0]["axes"]
    assert axes == [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    v04 = ngff.label_image_attrs("phases", 1, [1.0] * 3, "micrometer", "0.4", [1])
    assert v04["image-label"]["version"] == "0.4"


def test_labels_group_and_spatial_metadata_round_trip() -> None:
    assert ngff.labels_group_attrs(["a"], "0.5") == {"ome": {"version": "0.5", "labels": ["a"]}}
    assert ngff.labels_group_attrs(["a"], "0.4") == {"labels": ["a"]}
    attrs = ngff.image_attrs("v", 2, [0.5, 1.0, 1.0], "micrometer", "0.5")
    assert ngff.spatial_metadata(attrs) == (["z", "y", "x"], [0.5, 1.0, 1.0], "micrometer")
    assert ngff.spatial_metadata(attrs, "1") == (["z", "y", "x"], [1.0, 2.0, 2.0], "micrometer")
    assert ngff.spatial_metadata({}) == ([], None, None)


def test_label_title_names_the_napari_layer() -> None:
    """napari-ome-zarr names a label layer "<multiscales name>: <OMERO channel label>"."""
    attrs = ngff.label_image_attrs("phases", 1, [1.0] * 3, None, "0.5", title="reference")
    ome = attrs["ome"]
    assert ome["multiscales"][0]["name"] == "phases"
    assert ome["omero"]["channels"] == [{"active": False, "color": "FFFFFF", "label": "reference"}]
    shown = ngff.label_image_attrs("p", 1, [1.0] * 3, None, "0.4", title="x", visible=True)
    assert shown["omero"]["channels"][0]["active"] is True  # 0.4: beside multiscales
    assert "omero" not in ngff.label_image_attrs("p", 1, [1.0] * 3, None, "0.5")
