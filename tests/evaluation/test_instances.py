"""Instance metrics on hand-built cases: matching, F1, COCO AP (hand-computed values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlpipe.evaluation.instances import (
    average_precision,
    evaluate_instance_images,
    match_detections,
    pair_iou,
)

CLASSES = ["background", "pore", "fibre"]


def _square(img: np.ndarray, label: int, y: int, x: int, s: int) -> None:
    img[y : y + s, x : x + s] = label


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Truth: two pores (10×10) and one fibre (10×10) on 64×64."""
    inst = np.zeros((64, 64), np.uint32)
    sem = np.zeros((64, 64), np.uint8)
    for i, (y, x, c) in enumerate([(2, 2, 1), (2, 30, 1), (40, 40, 2)], start=1):
        _square(inst, i, y, x, 10)
        _square(sem, c, y, x, 10)
    return inst, sem


def test_pair_iou_hand_values() -> None:
    t = np.zeros((10, 10), np.uint32)
    p = np.zeros((10, 10), np.uint32)
    t[0:4, 0:4] = 3  # 16 px
    p[0:4, 2:6] = 7  # 16 px, 8 shared -> IoU 8 / 24
    p[8:10, 8:10] = 9  # no overlap
    pid, tid, iou = pair_iou(p, t)
    assert pid.tolist() == [7, 9] and tid.tolist() == [3]
    assert iou[0, 0] == pytest.approx(8 / 24) and iou[1, 0] == 0


def test_perfect_prediction() -> None:
    inst, sem = _scene()
    r = evaluate_instance_images([(inst, sem, inst, sem, {1: 0.9, 2: 0.8, 3: 0.7})], CLASSES)
    for m in (*r["per_class"].values(), r["overall"]):
        assert m["ap"] == 1 and m["ap50"] == 1 and m["ap75"] == 1
        assert m["f1"] == 1 and m["precision"] == 1 and m["recall"] == 1
    assert r["overall"]["n_true"] == 3 and r["overall"]["n_matched"] == 3


def test_half_matched_worked_values() -> None:
    """Pores: 2 true; one found exactly (score .9), one prediction misses (score .8).

    Precision = recall = F1 = 1/2. AP at every threshold: recall 1/2 reached at precision 1,
    so the 51 recall points 0..0.50 read 1 and the 50 above read 0: AP = 51/101.
    """
    inst, sem = _scene()
    pred = np.zeros_like(inst)
    psem = np.zeros_like(sem)
    _square(pred, 1, 2, 2, 10)
    _square(pred, 2, 50, 2, 10)  # nothing there
    psem[pred > 0] = 1
    pores = ["background", "pore"]
    tsem = np.where(sem == 1, 1, 0).astype(np.uint8)
    tinst = np.where(sem == 1, inst, 0).astype(np.uint32)
    r = evaluate_instance_images([(pred, psem, tinst, tsem, {1: 0.9, 2: 0.8})], pores)
    m = r["per_class"]["pore"]
    assert (m["n_true"], m["n_pred"], m["n_matched"]) == (2, 2, 1)
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert m["ap50"] == pytest.approx(51 / 101) and m["ap"] == pytest.approx(51 / 101)


def test_score_ordering_changes_ap_not_f1() -> None:
    """The miss ranked first: precision 0 then 1/2, envelope 1/2 up to recall 1/2."""
    scores = [0.8, 0.9]  # detection 0 matches, detection 1 (higher score) is a miss
    iou = np.array([[1.0, 0.0], [0.0, 0.0]])
    m = match_detections(iou, scores, [0.5])
    assert m.tolist() == [[0, -1]]
    ap = average_precision(scores, m[0] >= 0, n_true=2)
    assert ap == pytest.approx(51 * 0.5 / 101)
    assert average_precision([0.9, 0.8], [True, False], 2) == pytest.approx(51 / 101)


def test_ap_over_thresholds_hand_computed() -> None:
    """One object, IoU 0.72: matched at 0.50..0.70 (5 of 10 thresholds): AP = 0.5."""
    t = np.zeros((20, 20), np.uint32)
    p = np.zeros((20, 20), np.uint32)
    t[0:10, 0:10] = 1  # 100 px
    p[0:10, 0:10] = 1
    p[0:10, 10:20] = 0
    # remove 28 px from the prediction: IoU = 72 / 100
    p[0:2, 0:10] = 0
    p[2:10, 0:1] = 0
    sem_t = (t > 0).astype(np.uint8)
    sem_p = (p > 0).astype(np.uint8)
    assert (p > 0).sum() == 72
    r = evaluate_instance_images([(p, sem_p, t, sem_t, None)], ["background", "x"])
    m = r["per_class"]["x"]
    assert m["ap50"] == 1 and m["ap75"] == 0 and m["ap"] == pytest.approx(0.5)
    assert m["mean_matched_iou"] == pytest.approx(0.72)


def test_duplicates_are_false_positives() -> None:
    """Two predictions on one object: the higher score matches, the other is a FP."""
    iou = np.array([[0.9], [0.95]])
    m = match_detections(iou, [0.6, 0.7], [0.5])
    assert m.tolist() == [[-1, 0]]  # the higher-scored one takes the object
    ap = average_precision([0.6, 0.7], m[0] >= 0, n_true=1)
    assert ap == 1.0  # a duplicate ranked below the hit does not lower AP
    ap = average_precision([0.7, 0.6], [False, True], n_true=1)
    assert ap == pytest.approx(0.5)  # ... ranked above it halves it


def test_one_to_one_best_iou() -> None:
    """A prediction takes the unmatched true instance with the highest IoU."""
    iou = np.array([[0.6, 0.8], [0.0, 0.7]])
    assert match_detections(iou, [0.9, 0.5], [0.5]).tolist() == [[1, -1]]
    assert match_detections(iou, [0.9, 0.5], [0.5]).shape == (1, 2)


def test_empty_prediction_and_empty_truth() -> None:
    inst, sem = _scene()
    empty = np.zeros_like(inst)
    esem = np.zeros_like(sem)
    r = evaluate_instance_images([(empty, esem, inst, sem, None)], CLASSES)
    m = r["overall"]
    assert m["n_pred"] == 0 and m["recall"] == 0 and m["f1"] == 0 and m["ap"] == 0
    assert math.isnan(m["precision"])
    r = evaluate_instance_images([(inst, sem, empty, esem, None)], CLASSES)
    m = r["overall"]
    assert m["precision"] == 0 and m["f1"] == 0
    assert math.isnan(m["recall"]) and math.isnan(m["ap"])
    r = evaluate_instance_images([(empty, esem, empty, esem, None)], CLASSES)
    for k in ("precision", "recall", "f1", "ap", "ap50", "ap75"):
        assert math.isnan(r["overall"][k])


def test_classes_must_agree() -> None:
    """A prediction over the right pixels but of the wrong class matches nothing."""
    inst, sem = _scene()
    wrong = np.where(sem == 1, 2, np.where(sem == 2, 1, 0)).astype(np.uint8)
    r = evaluate_instance_images([(inst, wrong, inst, sem, None)], CLASSES)
    assert r["overall"]["n_matched"] == 0 and r["overall"]["n_pred"] == 3


def test_pooled_over_images() -> None:
    """Image A: hit (.9); image B: miss (.95) and hit (.5). Pooled order: miss, hit, hit.

    precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> envelope 2/3 everywhere: AP = 2/3.
    """
    a_t = np.zeros((16, 16), np.uint32)
    a_t[0:5, 0:5] = 1
    b_t = np.zeros((16, 16), np.uint32)
    b_t[8:13, 8:13] = 1
    b_p = np.zeros((16, 16), np.uint32)
    b_p[0:5, 0:5] = 1
    b_p[8:13, 8:13] = 2
    cls = ["background", "x"]

    def s(x: np.ndarray) -> np.ndarray:
        return (x > 0).astype(np.uint8)

    r = evaluate_instance_images(
        [(a_t, s(a_t), a_t, s(a_t), {1: 0.9}), (b_p, s(b_p), b_t, s(b_t), {1: 0.95, 2: 0.5})],
        cls,
    )
    m = r["per_class"]["x"]
    assert m["ap50"] == pytest.approx(2 / 3)
    assert (m["n_true"], m["n_pred"], m["n_matched"]) == (2, 3, 2)
    assert m["f1"] == pytest.approx(0.8)


# --------------------------------------------------------------------------- CLI, files


def _store(path, inst, sem, classes, images=None, table=None):
    import zarr

    g = zarr.open_group(str(path), mode="w")
    g.create_array("instances", data=inst)
    g.create_array("semantic", data=sem)
    if images is not None:
        g.create_array("images", data=images)
    g.attrs["classes"] = classes
    if table is not None:
        lines = ["image,image_name,z,instance_id,class_id,class_name,score,x1,y1,x2,y2,area"]
        lines += [f"{i},img{i},-1,{k},{c},{classes[c]},{s},0,0,1,1,1" for i, k, c, s in table]
        (path / "instances.csv").write_text("\n".join(lines) + "\n")
    return path


def _cli(args, tmp_path, tracking=False):
    import json as _json

    from dlpipe.cli import main

    cfg = _json.dumps({"results": str(tmp_path / "results"), "tracking": {"enabled": tracking}})
    with pytest.raises(SystemExit) as exc:
        main(["--log-level", "warning", "--config-json", cfg, *args])
    return exc.value.code


def test_cli_evaluate_instances_hand_values(tmp_path, capsys) -> None:
    """Image 0: a pore and a fibre found exactly (.9, .8); image 1: its fibre missed by a
    prediction elsewhere (.95). Pore AP 1; fibre: pooled miss (.95) then hit (.8) gives
    AP = 51 × 0.5 / 101; overall AP = their mean; F1 = 2·2 / (3 + 3)."""
    import json as _json

    inst = np.zeros((2, 32, 32), np.uint32)
    sem = np.zeros((2, 32, 32), np.uint8)
    inst[0, 2:10, 2:10], sem[0, 2:10, 2:10] = 1, 1
    inst[0, 20:28, 20:28], sem[0, 20:28, 20:28] = 2, 2
    inst[1, 4:12, 4:12], sem[1, 4:12, 4:12] = 1, 2
    truth = _store(
        tmp_path / "gt.zarr", inst, sem, CLASSES, images=np.full((2, 32, 32), 100, np.uint8)
    )
    p_inst, p_sem = inst.copy(), sem.copy()
    p_inst[1], p_sem[1] = 0, 0
    p_inst[1, 20:28, 4:12], p_sem[1, 20:28, 4:12] = 1, 2
    pred = _store(
        tmp_path / "pred.zarr",
        p_inst,
        p_sem,
        CLASSES,
        table=[(0, 1, 1, 0.9), (0, 2, 2, 0.8), (1, 1, 2, 0.95)],
    )
    out = tmp_path / "m" / "metrics.json"
    code = _cli(
        ["evaluate", "--instances", str(pred), str(truth), "--out", str(out)],
        tmp_path,
        tracking=True,
    )
    assert code == 0, capsys.readouterr().err
    r = _json.loads(out.read_text())
    pore, fibre, o = r["per_class"]["pore"], r["per_class"]["fibre"], r["overall"]
    assert pore["ap"] == 1 and pore["f1"] == 1
    assert fibre["ap50"] == pytest.approx(51 * 0.5 / 101) and fibre["f1"] == 0.5
    assert o["ap"] == pytest.approx((1 + 51 * 0.5 / 101) / 2)
    assert (o["n_true"], o["n_pred"], o["n_matched"]) == (3, 3, 2)
    assert o["f1"] == pytest.approx(2 / 3) and o["precision"] == pytest.approx(2 / 3)
    csv = out.with_suffix(".csv").read_text().splitlines()
    assert csv[0].startswith("class,n_true") and csv[-1].startswith("overall,3,3,2")
    assert (out.parent / "metrics_plots" / "ap_f1.png").is_file()
    assert (out.parent / "metrics_plots" / "outlines_0000.png").is_file()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("dlpipe").experiment_id])
    assert run.data.tags["stage"] == "evaluate"
    assert run.data.metrics["ap_pore"] == 1 and run.data.metrics["f1"] == pytest.approx(2 / 3)
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/ap_f1.png" in arts


def test_cli_evaluate_instances_bad_input(tmp_path, capsys) -> None:
    inst = np.zeros((1, 16, 16), np.uint32)
    sem = np.zeros((1, 16, 16), np.uint8)
    truth = _store(tmp_path / "gt.zarr", inst, sem, CLASSES)
    import zarr

    zarr.open_group(str(tmp_path / "nosem.zarr"), mode="w").create_array("instances", data=inst)
    out = str(tmp_path / "m.json")
    assert (
        _cli(
            ["evaluate", "--instances", str(tmp_path / "nosem.zarr"), str(truth), "--out", out],
            tmp_path,
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no `semantic` array" in err and len(err.strip().splitlines()) == 1
    other = _store(
        tmp_path / "big.zarr",
        np.zeros((2, 16, 16), np.uint32),
        np.zeros((2, 16, 16), np.uint8),
        CLASSES,
    )
    assert _cli(["evaluate", "--instances", str(other), str(truth), "--out", out], tmp_path) == 2
    assert "differs" in capsys.readouterr().err
    alien = _store(tmp_path / "alien.zarr", inst, sem, ["background", "bubble"])
    assert _cli(["evaluate", "--instances", str(alien), str(truth), "--out", out], tmp_path) == 2
    assert "bubble" in capsys.readouterr().err


def _coco_reference(iou: np.ndarray, scores: np.ndarray, t: float) -> tuple[list, list]:
    """pycocotools' evaluateImg loop, transcribed (one image, one class, no crowd)."""
    order = np.argsort(-scores, kind="mergesort")
    gtm = [-1] * iou.shape[1]
    dtm = []
    for d in order:
        best_iou, m = min(t, 1 - 1e-10), -1
        for g in range(iou.shape[1]):
            if gtm[g] > -1:
                continue
            if iou[d, g] < best_iou:
                continue
            best_iou, m = iou[d, g], g
        if m > -1:
            gtm[m] = d
        dtm.append(m)
    return [scores[d] for d in order], [m > -1 for m in dtm]


def _coco_ap(scores: list, tp: list, n_gt: int) -> float:
    """pycocotools' accumulate for one class and threshold, transcribed."""
    inds = np.argsort(-np.array(scores), kind="mergesort")
    tps = np.cumsum(np.array(tp)[inds]).astype(float)
    fps = np.cumsum(~np.array(tp)[inds]).astype(float)
    rc = tps / n_gt
    pr = list(tps / (fps + tps + np.spacing(1)))
    for i in range(len(pr) - 1, 0, -1):
        pr[i - 1] = max(pr[i - 1], pr[i])
    rec_thrs = np.linspace(0.0, 1.0, 101)
    q = np.zeros(101)
    idx = np.searchsorted(rc, rec_thrs, side="left")
    for ri, pi in enumerate(idx):
        if pi < len(pr):
            q[ri] = pr[pi]
    return float(q.mean())


def test_matching_and_ap_agree_with_transcribed_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for trial in range(40):
        n_det, n_gt = rng.integers(1, 9), rng.integers(1, 7)
        iou = np.round(rng.random((n_det, n_gt)), 1)  # ties on purpose
        scores = np.round(rng.random(n_det), 1)
        for t in (0.5, 0.75):
            m = match_detections(iou, scores, [t])[0]
            s_ref, tp_ref = _coco_reference(iou, scores, t)
            order = np.argsort(-scores, kind="mergesort")
            assert [bool(m[d] >= 0) for d in order] == tp_ref, trial
            ap = average_precision(scores, m >= 0, n_gt)
            assert ap == pytest.approx(_coco_ap(s_ref, tp_ref, n_gt), abs=1e-12), trial
