"""``dlpipe evaluate --instances`` on label volumes: 3D objects slab by slab, per-slice
predictions against a volume, bad input (one line, exit 2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile

from dlpipe.evaluation.instance_volumes import add_volume, class_name, volume_overlaps
from dlpipe.evaluation.instances import InstanceEvaluator


def _balls(shape: tuple[int, int, int], centres, r: float) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    out = np.zeros(shape, np.uint32)
    for k, (z, y, x) in enumerate(centres, 1):
        out[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r * r] = k
    return out


def _pair() -> tuple[np.ndarray, np.ndarray]:
    shape = (20, 24, 24)
    truth = _balls(shape, [(5, 6, 6), (5, 17, 17), (14, 6, 17), (14, 17, 6)], 3.5)
    pred = _balls(shape, [(5, 6, 6), (5, 17, 18), (14, 6, 17)], 3.5)  # one missed
    pred[18:20, 0:2, 0:2] = 9  # a small false positive
    return pred, truth


def _whole(pred: np.ndarray, truth: np.ndarray) -> dict:
    ev = InstanceEvaluator(["background", "pore"], ndim=3)
    ev.add_image(
        pred,
        truth,
        {int(i): 1 for i in np.unique(truth) if i},
        {int(i): 1 for i in np.unique(pred) if i},
    )
    return ev.result()


def test_slabs_equal_the_whole_volume() -> None:
    pred, truth = _pair()
    whole = _whole(pred, truth)
    for slab in (1, 3, 8, 20):
        ev = InstanceEvaluator(["background", "pore"], ndim=3)
        add_volume(ev, *volume_overlaps(pred, truth, [(0, 20)], slab))
        got = ev.result()
        for k, v in whole["overall"].items():
            assert got["overall"][k] == pytest.approx(v, nan_ok=True), (slab, k)
    o = whole["overall"]
    assert (o["n_true"], o["n_pred"], o["n_matched"]) == (4, 4, 3)
    assert o["count_error_signed"] == 0.0
    assert 0 < o["pq"] < 0.75 and o["rq"] == pytest.approx(3 / 4)


def test_class_name() -> None:
    assert class_name("pores_instances") == "pores"
    assert class_name("pore_instances") == "pore"
    assert class_name("instances") == "object"


def _cli(args, tmp_path):
    from dlpipe.cli import main

    cfg = json.dumps({"results": str(tmp_path / "results"), "tracking": {"enabled": False}})
    with pytest.raises(SystemExit) as exc:
        main(["--log-level", "warning", "--config-json", cfg, *args])
    return exc.value.code


def test_cli_volumes_tiff_and_zarr(tmp_path, capsys) -> None:
    import zarr

    pred, truth = _pair()
    tifffile.imwrite(tmp_path / "pore_instances.tif", truth)
    g = zarr.open_group(str(tmp_path / "pred.zarr"), mode="w")
    g.create_group("labels").create_group("instances").create_array(
        "0", data=pred, chunks=(4, 24, 24)
    )
    out = tmp_path / "m.json"
    code = _cli(
        [
            "evaluate",
            "--instances",
            str(tmp_path / "pred.zarr"),
            str(tmp_path / "pore_instances.tif"),
            "--out",
            str(out),
            "--all",
        ],
        tmp_path,
    )
    assert code == 0, capsys.readouterr().err
    r = json.loads(out.read_text())
    assert r["mode"] == "volume" and r["classes"] == ["pore"]
    want = _whole(pred, truth)["overall"]
    assert r["overall"]["pq"] == pytest.approx(want["pq"])
    assert r["overall"]["size_w1"] == pytest.approx(want["size_w1"])
    assert "PQ" in capsys.readouterr().out
    assert (tmp_path / "m_plots" / "sizes.png").is_file()
    assert out.with_suffix(".csv").read_text().splitlines()[0].endswith("mean_matched_iou")
    # a z range: only the objects' parts inside it
    out2 = tmp_path / "m2.json"
    assert (
        _cli(
            [
                "evaluate",
                "--instances",
                str(tmp_path / "pred.zarr/labels/instances"),
                str(tmp_path / "pore_instances.tif"),
                "--out",
                str(out2),
                "--z-range",
                "0",
                "10",
            ],
            tmp_path,
        )
        == 0
    )
    assert json.loads(out2.read_text())["overall"]["n_true"] == 2


def test_cli_bad_thresholds_and_missing_instances(tmp_path, capsys) -> None:
    import zarr

    pred, truth = _pair()
    tifffile.imwrite(tmp_path / "t.tif", truth)
    tifffile.imwrite(tmp_path / "p.tif", pred)
    out = str(tmp_path / "m.json")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("evaluation:\n  instances:\n    f1_iou: 1.5\n")
    from dlpipe.cli import main

    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--config",
                str(cfg),
                "evaluate",
                "--instances",
                str(tmp_path / "p.tif"),
                str(tmp_path / "t.tif"),
                "--out",
                out,
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "f1_iou" in err and len(err.splitlines()) == 1
    g = zarr.open_group(str(tmp_path / "vol.zarr"), mode="w")
    g.create_array("0", data=np.zeros((20, 24, 24), np.uint8))
    g.create_group("labels").create_group("phases").create_array(
        "0", data=np.zeros((20, 24, 24), np.uint8)
    )
    assert (
        _cli(
            [
                "evaluate",
                "--instances",
                str(tmp_path / "p.tif"),
                str(tmp_path / "vol.zarr"),
                "--out",
                out,
            ],
            tmp_path,
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "no single instance label image (labels: phases)" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.json").exists()


def test_check_params_refuses_thresholds() -> None:
    from dlpipe.errors import UserError
    from dlpipe.evaluation.instance_evaluate import check_params

    ok = {"iou_thresholds": [0.5], "f1_iou": 0.5, "overlays": 0}
    check_params(ok)
    for bad in (
        {"iou_thresholds": [0.0]},
        {"iou_thresholds": []},
        {"f1_iou": math.nan},
        {"iou_thresholds": [1.2]},
    ):
        with pytest.raises(UserError):
            check_params(ok | bad)


def test_cli_instance_unet_prediction_of_a_slab(tmp_path, capsys) -> None:
    """instance-unet's PRED.zarr of slices [z0, z1) (instances + semantic + table, fibre
    and pore classes) against the truth pores of the whole volume: only its pores, only its
    slices."""
    import zarr

    pred, truth = _pair()
    tifffile.imwrite(tmp_path / "pore_instances.tif", truth)
    g = zarr.open_group(str(tmp_path / "pred.zarr"), mode="w")
    inst = pred[10:20].copy()
    sem = np.where(inst > 0, 2, 0).astype(np.uint8)
    inst[0:2, 20:24, 20:24], sem[0:2, 20:24, 20:24] = 50, 1  # a fibre: not scored
    g.create_array("instances", data=inst)
    g.create_array("semantic", data=sem)
    g.attrs["dlpipe"] = {
        "classes": ["background", "fibre", "pore"],
        "z": [10, 20],
        "source_kind": "volume",
        "ids": "unique within the volume (3D objects)",
    }
    out = tmp_path / "m.json"
    pair = [str(tmp_path / "pred.zarr"), str(tmp_path / "pore_instances.tif")]
    args = ["evaluate", "--instances", *pair, "--out", str(out)]
    assert _cli(args, tmp_path) == 0
    r = json.loads(out.read_text())
    assert r["z_ranges"] == [[10, 20]] and r["classes"] == ["pore"]
    o = r["overall"]
    # slices 10-19: true pores 3 and 4, predicted pore 3 and the small false positive
    assert (o["n_true"], o["n_pred"], o["n_matched"]) == (2, 2, 1)
    assert _cli([*args, "--all", "--overwrite"], tmp_path) == 2
    assert "covers slices 10-19 only" in capsys.readouterr().err


def test_cli_components_floor(tmp_path, capsys) -> None:
    """A semantic prediction's pore components as instances: two touching true pores are
    one component (the bias the floor shows), counted once."""
    from dlpipe.stores.volume import write_labels

    shape = (12, 16, 24)
    truth = _balls(shape, [(6, 8, 5), (6, 8, 11), (6, 8, 20)], 3.0)  # 1 and 2 touch
    sem = np.where(truth > 0, 2, 0).astype(np.uint8)
    sem[0, 0, 0] = 1  # a fibre voxel: another class, not an instance
    write_labels(
        tmp_path / "base.zarr",
        [((slice(0, 12), slice(0, 16), slice(0, 24)), sem)],
        shape,
        (4, 16, 24),
        attrs={"classes": ["matrix", "fibre", "pore"]},
    )
    tifffile.imwrite(tmp_path / "pore_instances.tif", truth)
    out = tmp_path / "m.json"
    args = [
        "evaluate",
        "--instances",
        str(tmp_path / "base.zarr"),
        str(tmp_path / "pore_instances.tif"),
        "--out",
        str(out),
        "--all",
    ]
    assert _cli([*args, "--components", "pore"], tmp_path) == 0, capsys.readouterr().err
    o = json.loads(out.read_text())["overall"]
    # the balls of the merged pair share the plane x = 8, painted with pore 2: the merged
    # component matches pore 2 (IoU > 0.5) and misses pore 1: TP 2, FP 0, FN 1
    assert (o["n_true"], o["n_pred"], o["n_matched"]) == (3, 2, 2)
    assert o["rq"] == pytest.approx(2 / 2.5)
    assert o["count_error_signed"] == pytest.approx(-1 / 3)
    assert _cli([*args, "--components", "bubble", "--overwrite"], tmp_path) == 2
    assert "not a class of the prediction (fibre, pore)" in capsys.readouterr().err


def test_pores_table(tmp_path) -> None:
    from dlpipe.evaluation.instance_summary import write_instance_summary

    for name, pq in (("a", 0.5), ("b", float("nan"))):
        (tmp_path / f"{name}.json").write_text(
            json.dumps(
                {
                    "overall": {"f1": 0.8, "pq": pq, "count_error_signed": -0.25, "n_true": 4},
                    "z_ranges": [[2, 6]],
                }
            ).replace("NaN", "null")
        )
    rows = write_instance_summary(
        {"instance-unet": tmp_path / "a.json", "otsu-cc": tmp_path / "b.json"},
        tmp_path / "p.csv",
        tmp_path / "p.html",
    )
    assert [r["method"] for r in rows] == ["instance-unet", "otsu-cc"]
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("method,f1,pq") and lines[1].startswith("instance-unet,0.8,0.5,")
    assert lines[1].endswith(",4,,,2-6") and ",-0.25," in lines[1]
    html = (tmp_path / "p.html").read_text()
    assert "-25.0 %" in html and "n/a" in html


def test_summary_instances_cli(tmp_path, capsys) -> None:
    """`dlpipe summary --instances pores`: the workflow's pores table, its result line, and no
    silent overwrite."""
    metrics = []
    for method, f1, err in (("instance-unet", 0.9, 0.0), ("otsu-cc", 0.4, 2.75)):
        (tmp_path / method).mkdir()
        path = tmp_path / method / "metrics.json"
        path.write_text(json.dumps({"overall": {"f1": f1, "count_error_signed": err}}))
        metrics.append(str(path))
    out = tmp_path / "summary"
    args = ["summary", *metrics, "--instances", "pores", "--out", str(out)]
    assert _cli(args, tmp_path) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2] == f"pores: 2 methods: {out / 'pores.csv'}"
    assert lines[-1] == "best F1@0.5: instance-unet (0.900, count error +0.0 %)"
    rows = (out / "pores.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["instance-unet", "otsu-cc"]
    assert ",0.4," in rows[2] and ",2.75," in rows[2]
    assert (out / "pores.html").is_file()
    before = (out / "pores.csv").read_text()
    assert _cli(args, tmp_path) == 2  # the table exists: only with --overwrite
    err = capsys.readouterr().err.strip()
    assert "pores.csv" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert (out / "pores.csv").read_text() == before


def test_components_needs_instances(tmp_path, capsys) -> None:
    args = ["evaluate", "a.zarr", "b.zarr", "--out", str(tmp_path / "m.json"), "--components", "x"]
    assert _cli(args, tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert "--components needs --instances" in err and len(err.splitlines()) == 1
