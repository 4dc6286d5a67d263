"""Classical segmentations to compare the networks with: multi-Otsu and a random forest."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dlpipe.errors import UserError
from dlpipe.evaluation import evaluate
from dlpipe.evaluation.volumes import test_range
from dlpipe.labels import IGNORE_INDEX
from dlpipe.postprocess.components import blocks
from dlpipe.results import StageResult
from dlpipe.stores.atomic import check_outputs
from dlpipe.stores.volume import chunk_shape, dlpipe_attrs, open_labels, write_labels

log = logging.getLogger(__name__)

METHODS = ("otsu", "rf")
Segmenter = Callable[[int], np.ndarray]  # z -> the (y, x) uint8 labels of z-slice z


def _training(
    truth: Any, slices: Sequence[int], ignore: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Truth on the training slices (n, y, x) and the mask of usable pixels."""
    lab = np.stack([np.asarray(truth[z]) for z in slices])
    valid = lab != ignore if ignore is not None else np.ones(lab.shape, bool)
    if not valid.any():
        raise UserError("the training slices have no labelled pixel")
    return lab, valid


def _normalise(volume: Any, slices: Sequence[int]) -> tuple[float, float]:
    sample = np.concatenate([np.asarray(volume[z]).ravel() for z in slices]).astype(np.float64)
    lo, hi = np.percentile(sample, [0.1, 99.9])
    return float(lo), float(max(hi, lo + 1e-9))


def multi_otsu(
    volume: Any,
    truth: Any,
    slices: Sequence[int],
    n_classes: int,
    params: Mapping[str, Any],
    ignore: int | None = IGNORE_INDEX,
) -> np.ndarray:
    """Multi-Otsu thresholds (:func:`fit_otsu`) applied to every z-slice: (z, y, x) uint8."""
    return _whole(volume, fit_otsu(volume, truth, slices, n_classes, params, ignore))


def _whole(volume: Any, segment: Segmenter) -> np.ndarray:
    out = np.empty(volume.shape, np.uint8)
    for z in range(volume.shape[0]):
        out[z] = segment(z)
    return out


def fit_otsu(
    volume: Any,
    truth: Any,
    slices: Sequence[int],
    n_classes: int,
    params: Mapping[str, Any],
    ignore: int | None = IGNORE_INDEX,
) -> Segmenter:
    """Multi-Otsu thresholds on the training slices, each intensity class mapped to a label.

    The grey values of the training slices (after a Gaussian blur of ``params['sigma']``
    per slice) are split into as many intensity classes as there are labels on the training
    slices by :func:`skimage.filters.threshold_multiotsu`; the k-th darkest intensity class
    gets the label with the k-th lowest mean grey value on the training slices.

    Returns
    -------
    segment(z) -> (y, x) uint8 labels of z-slice ``z``
    """
    from scipy import ndimage
    from skimage.filters import threshold_multiotsu

    sigma = float(params["sigma"])

    def smooth(z: int) -> np.ndarray:
        img = np.asarray(volume[z]).astype(np.float32)
        return ndimage.gaussian_filter(img, sigma) if sigma > 0 else img

    lab, valid = _training(truth, slices, ignore)
    train = np.stack([smooth(z) for z in slices])
    values, labels = train[valid], lab[valid]
    present = [c for c in range(n_classes) if np.any(labels == c)]
    if len(present) < 2:
        raise UserError("multi-Otsu needs at least two classes on the training slices")
    # intensity classes (dark to bright) <- labels ordered by their mean grey value
    means = [float(values[labels == c].mean()) for c in present]
    mapping = np.array([present[i] for i in np.argsort(means)], np.uint8)
    thresholds = threshold_multiotsu(values, classes=len(present))
    return lambda z: mapping[np.digitize(smooth(z), thresholds)]


def random_forest(
    volume: Any,
    truth: Any,
    slices: Sequence[int],
    params: Mapping[str, Any],
    ignore: int | None = IGNORE_INDEX,
) -> np.ndarray:
    """The random forest (:func:`fit_random_forest`) applied to every z-slice: (z, y, x) uint8."""
    return _whole(volume, fit_random_forest(volume, truth, slices, params, ignore))


def fit_random_forest(
    volume: Any,
    truth: Any,
    slices: Sequence[int],
    params: Mapping[str, Any],
    ignore: int | None = IGNORE_INDEX,
) -> Segmenter:
    """Random-forest pixel classifier on :func:`skimage.feature.multiscale_basic_features`.

    Features (intensity, edges, texture at scales ``sigma_min``..``sigma_max``) of each
    z-slice, normalised to the 0.1/99.9 percentiles of the training slices; trained on
    at most ``max_samples`` labelled pixels drawn at random from the training slices.

    Returns
    -------
    segment(z) -> (y, x) uint8 labels of z-slice ``z``
    """
    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    lo, hi = _normalise(volume, slices)

    def features(z: int) -> np.ndarray:
        img = (np.asarray(volume[z]).astype(np.float32) - lo) / (hi - lo)
        return multiscale_basic_features(
            img, sigma_min=params["sigma_min"], sigma_max=params["sigma_max"], workers=1
        )

    lab, valid = _training(truth, slices, ignore)
    rng = np.random.default_rng(params["seed"])
    xs, ys = [], []
    per_slice = max(1, params["max_samples"] // len(slices))
    bar = tqdm(slices, desc="random forest features", unit="slice", disable=None, leave=False)
    for i, z in enumerate(bar):
        f = features(z)
        idx = np.flatnonzero(valid[i].ravel())
        pick = rng.choice(idx, size=min(per_slice, idx.size), replace=False)
        xs.append(f.reshape(-1, f.shape[-1])[pick])
        ys.append(lab[i].ravel()[pick])
    clf = RandomForestClassifier(
        n_estimators=params["n_estimators"],
        max_depth=params["max_depth"],
        n_jobs=params["n_jobs"],
        random_state=params["seed"],
    )
    x_train = np.concatenate(xs)
    log.info("random forest: fitting %d trees on %d pixels", params["n_estimators"], len(x_train))
    clf.fit(x_train, np.concatenate(ys))

    def segment(z: int) -> np.ndarray:
        f = features(z)
        return clf.predict(f.reshape(-1, f.shape[-1])).reshape(f.shape[:2]).astype(np.uint8)

    return segment


def _segmented_blocks(
    segment: Segmenter, shape: tuple[int, ...], chunks: Sequence[int], method: str
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """The label blocks in raster order, one z-layer of chunks segmented at a time (memory:
    one layer, not the volume)."""
    layer: np.ndarray | None = None
    z0 = -1
    bar = tqdm(total=shape[0], desc=method, unit="slice", disable=None, leave=False)
    for sl in blocks(shape, chunks):
        if sl[0].start != z0:
            z0 = sl[0].start
            layer = np.stack([segment(z) for z in range(z0, sl[0].stop)])
            bar.update(sl[0].stop - z0)
        yield sl, layer[(slice(None), *sl[1:])]
    bar.close()


def training_slices(
    slices: Sequence[int] | None, metadata: str | Path | None, depth: int
) -> list[int]:
    """The annotated z indices: given, or ``annotated_slices`` of a metadata JSON."""
    if slices is None and metadata is not None:
        try:
            slices = json.loads(Path(metadata).read_text())["annotated_slices"]
        except FileNotFoundError:
            raise UserError("metadata file not found", path=metadata) from None
        except (KeyError, TypeError, json.JSONDecodeError):
            raise UserError("metadata has no 'annotated_slices' list", path=metadata) from None
    if not slices:
        raise UserError("no training slices: give --slices or --metadata with annotated_slices")
    out = sorted({int(z) for z in slices})
    bad = [z for z in out if not 0 <= z < depth]
    if bad:
        raise UserError(f"training slice {bad[0]} is outside the volume (depth {depth})")
    return out


def placed_annotations(path: str | Path) -> tuple[Any, list[int]]:
    """The annotations placed into a volume by ``dlpipe cvat --volume`` and their z-slices.

    Parameters
    ----------
    path : ``VOL.zarr`` whose ``labels/annotations/0`` (uint8, z, y, x; 255 = not
        annotated) and ``dlpipe.annotations.slices`` attribute the placement wrote

    Returns
    -------
    The label array (not read) and the annotated z indices, sorted.
    """
    placed = dlpipe_attrs(path).get("annotations")
    if not isinstance(placed, dict):
        raise UserError(
            "no annotations placed in the volume (run `dlpipe cvat EXPORT --volume`)", path=path
        )
    z = sorted(int(i) for i in placed.get("slices", {}).get("z", []))
    if not z:
        raise UserError("the placed annotations hold no z-slice to train on", path=path)
    return open_labels(path, labels_name=placed.get("name", "annotations")), z


def held_out_ranges(train: Sequence[int], depth: int) -> list[tuple[int, int]]:
    """The contiguous z-ranges that hold no training slice."""
    mask = np.ones(depth, bool)
    mask[list(train)] = False
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def baseline(
    volume_path: str | Path,
    truth_path: str | Path,
    out: str | Path,
    metrics_json: str | Path,
    params: Mapping[str, Any],
    eval_params: Mapping[str, Any],
    *,
    method: str | None = None,
    slices: Sequence[int] | None = None,
    metadata: str | Path | None = None,
    z_range: Sequence[int] | None = None,
    use_all: bool = False,
    overwrite: bool = False,
    annotations: str | Path | None = None,
) -> StageResult:
    """Segment ``volume_path`` with a classical method trained on annotated slices; evaluate.

    The label volume goes to ``OUT.zarr/labels/<name>/0``; it is then evaluated against
    ``truth_path`` by :func:`dlpipe.evaluation.evaluate` on the test split (``dlpipe.split``
    attributes), else on the z-slices that hold no training slice (``z_range`` / ``use_all``
    override), writing ``metrics_json``. The method trains on ``truth_path`` at the training
    slices, or, with ``annotations`` (a ``VOL.zarr`` of ``dlpipe cvat --volume``), on the
    annotations placed there (255 = not annotated), at their annotated z-slices unless
    ``slices`` / ``metadata`` give others.
    """
    method = method or params["method"]
    if method not in METHODS:
        raise UserError(f"unknown baseline method {method!r} (use one of {', '.join(METHODS)})")
    out = Path(out)
    metrics_json = Path(metrics_json)
    check_outputs(
        [out, metrics_json, metrics_json.with_suffix(".csv")],
        overwrite=overwrite,
        inputs=[volume_path, truth_path, metadata],
    )
    name = eval_params.get("labels_name", "phases")
    volume = open_labels(volume_path, image=True)
    truth = open_labels(truth_path, labels_name=name)
    if len(volume.shape) != 3 or tuple(volume.shape) != tuple(truth.shape):
        raise UserError(
            f"volume {tuple(volume.shape)} and truth {tuple(truth.shape)} must be the "
            "same (z, y, x) shape",
            path=volume_path,
        )
    depth = volume.shape[0]
    source = truth
    if annotations is not None:
        source, placed_z = placed_annotations(annotations)
        if tuple(source.shape) != tuple(volume.shape):
            raise UserError(
                f"annotations {tuple(source.shape)} and volume {tuple(volume.shape)} differ "
                "in shape",
                path=annotations,
            )
        if slices is None and metadata is None:
            slices = placed_z
    train = training_slices(slices, metadata, depth)
    ignore = eval_params.get("ignore_index")
    if annotations is not None:
        ignore = IGNORE_INDEX  # the placement's "not annotated"
    classes = eval_params.get("classes")
    if classes:
        n_classes = len(classes)
    else:
        lab, valid = _training(source, train, ignore)
        n_classes = int(lab[valid].max()) + 1
    if method == "otsu":
        segment = fit_otsu(volume, source, train, n_classes, params["otsu"], ignore)
    else:
        segment = fit_random_forest(volume, source, train, params["rf"], ignore)
    chunks = chunk_shape(truth)
    attrs = {k: v for k, v in dlpipe_attrs(volume_path).items() if k in ("split", "source")}
    attrs["baseline"] = {"method": method, "training_slices": train}
    write_labels(
        out,
        _segmented_blocks(segment, tuple(volume.shape), chunks, method),
        tuple(volume.shape),
        chunks,
        labels_name=name,
        attrs=attrs,
        overwrite=overwrite,
        like=volume_path,
    )
    ranges = None
    if z_range is None and not use_all and test_range(volume_path, truth_path) is None:
        ranges = held_out_ranges(train, depth)
        if not ranges:
            raise UserError("every z-slice is a training slice: nothing is left to evaluate on")
    result = evaluate(
        out,
        truth_path,
        metrics_json,
        eval_params,
        image_path=volume_path,
        z_range=z_range,
        use_all=use_all,
        z_ranges=ranges,
        z_source="held-out slices",
        overwrite=overwrite,
    )
    result["method"] = method
    result["training_slices"] = train
    result.summary = f"{method}: {result.summary.rsplit(': ', 1)[0]}: {out}"
    return result
