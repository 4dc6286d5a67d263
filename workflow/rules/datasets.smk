# The datasets of the config (schema: `datasets`): every stage runs per dataset, under
# <results>/<dataset>/. This file checks the entries once, when the workflow is read, and
# holds the path helpers and the default targets that the rules use.
#
# A dataset is the synthetic demo ({synth: true}) or a scan of your own: `volume`, with
# `annotations` (a CVAT for images 1.1 export of slices of it) to train on, and `truth`
# (dense labels) to score against. `models_from` also predicts it with another dataset's models.
import copy
import sys
from pathlib import Path

# What the U-Net trains on. "volume": the annotations placed into the scan
# (volume.zarr/labels/annotations): 2.5D context and 3D boxes are the real scan around each
# annotated slice, and the scan's own contrast (benchmarks/RESULTS.md, "Annotations placed in
# the volume vs stacked images"). "dataset": the dataset Zarr of the CVAT images (cvat.zarr,
# the annotated images stacked, neighbours being the next annotated image). This one line
# switches the train rule's input and store for every dataset. From the volume, training
# reads labels/annotations (never a dense truth tiled beside it); with a truth the volume's
# z-slabs split the annotated slices (none from the test slab trains).
TRAIN_FROM = "volume"


def _refuse(message):
    """Bad config: one line on stderr and exit 2, before anything runs."""
    print(f"config error: {message}", file=sys.stderr)
    sys.exit(2)


def _path_part(spec):
    """The file or folder of a `dlpipe tile` input (FILE.h5:/dataset -> FILE.h5)."""
    if os.path.exists(spec) or ":" not in spec:
        return spec
    return spec.split(":", 1)[0]


def _check_dataset(name, entry):
    """Refuse an entry that cannot run (exit 2, naming the dataset and the key)."""
    where = f"datasets.{name}"
    if entry.get("synth"):
        for key in ("volume", "annotations", "images", "truth"):
            if key in entry:
                _refuse(f"{where}.{key}: a synth dataset makes its own {key}; leave it out")
        return
    if "volume" not in entry:
        _refuse(f"{where}: give volume (and annotations), or synth: true")
    for key in ("volume", "annotations", "images", "truth"):
        if key in entry and not os.path.exists(_path_part(entry[key])):
            _refuse(f"{where}.{key}: path not found: {entry[key]}")
    if "annotations" not in entry and not entry.get("models_from"):
        _refuse(f"{where}: no annotations to train on and no models_from to predict with")


def _datasets():
    """{name: entry} of the config's datasets (null entries dropped), checked."""
    found = {n: e for n, e in config["datasets"].items() if e is not None}
    if not found:
        _refuse("datasets: every entry is null; give at least one dataset")
    for name, entry in found.items():
        _check_dataset(name, entry)
    for name, entry in found.items():
        for source in entry.get("models_from", []):
            if source not in found or not _trains(found[source]):
                _refuse(
                    f"datasets.{name}.models_from: {source!r} is not a dataset that trains models"
                )
    return found


def _annotated(entry):
    return bool(entry.get("synth")) or "annotations" in entry


def _trains(entry):
    return _annotated(entry) and entry.get("train", True)


def _dataset_config(name, entry):
    """The config as dataset ``name`` sees it (its synth, tile and class settings), validated."""
    cfg = copy.deepcopy(config)
    if isinstance(entry.get("synth"), dict):
        _merge(cfg["synth"], entry["synth"])
    _merge(cfg["tile"], entry.get("tile", {}))
    if "voxel_size" in entry:
        cfg["tile"]["voxel_size"] = entry["voxel_size"]
    if "classes" in entry:
        cfg["evaluation"]["classes"] = entry["classes"]
    try:
        return validate_config(cfg, source=f"datasets.{name}")
    except Exception as err:  # ConfigError: one line naming the key
        _refuse(str(err))  # names the source, datasets.<name>, and the key


DATASETS = _datasets()
DATASET_CONFIG = {name: _dataset_config(name, e) for name, e in DATASETS.items()}


def _alternatives(names):
    """A wildcard pattern matching exactly these names (none: matching nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


SYNTH_DATASETS = [n for n, e in DATASETS.items() if e.get("synth")]
ANNOTATED_DATASETS = [n for n, e in DATASETS.items() if _annotated(e)]
TRAINED_DATASETS = [n for n, e in DATASETS.items() if _trains(e)]
SCORED_DATASETS = [n for n, e in DATASETS.items() if e.get("synth") or "truth" in e]
# Annotated scans without a truth: their U-Nets get the annotation score (held-out slices).
ANNOTATION_SCORED = [n for n in ANNOTATED_DATASETS if n not in SCORED_DATASETS]


wildcard_constraints:
    dataset=_alternatives(DATASETS),


# Path templates ({dataset} a wildcard) of what the stages hand over.
DS = f"{RESULTS}/{{dataset}}"
VOLUME = f"{DS}/volume.zarr/.dlpipe_complete"
PLACED = f"{DS}/volume.zarr/labels/annotations/.dlpipe_complete"
DATASET_ZARR = f"{DS}/cvat.zarr/.dlpipe_complete"
DS_LOGS = f"{LOGS}/{{dataset}}"
DS_BENCH = f"{BENCH}/{{dataset}}"


def _entry(wildcards):
    return DATASETS[wildcards.dataset]


def scan_input(wildcards):
    """The scan `dlpipe tile` reads: the demo's volume.tif or the dataset's `volume`."""
    if _entry(wildcards).get("synth"):
        return f"{RESULTS}/{wildcards.dataset}/volume.tif"
    return _entry(wildcards)["volume"]


def truth_input(wildcards):
    """{'labels': dense truth} for `dlpipe tile --labels`, or {} without one."""
    if _entry(wildcards).get("synth"):
        return {"labels": f"{RESULTS}/{wildcards.dataset}/labels.tif"}
    truth = _entry(wildcards).get("truth")
    return {"labels": truth} if truth else {}


def annotations_input(wildcards):
    """The CVAT export of the dataset (the demo's annotations.xml, else `annotations`)."""
    if _entry(wildcards).get("synth"):
        return f"{RESULTS}/{wildcards.dataset}/cvat/annotations.xml"
    return _entry(wildcards)["annotations"]


def images_option(wildcards):
    """`--images DIR` when the images are not in the export zip (images/ beside the XML)."""
    entry = _entry(wildcards)
    if "images" in entry:
        return f"--images {shlex.quote(entry['images'])}"
    export = annotations_input(wildcards)
    if export.endswith(".zip"):
        return ""
    return f"--images {shlex.quote(os.path.join(os.path.dirname(export), 'images'))}"


def volume_ready(wildcards):
    """What readers of VOL.zarr wait for: the tiled scan and, for an annotated dataset, the
    annotations placed into it (placing rewrites the store's attributes)."""
    ready = [VOLUME.format(dataset=wildcards.dataset)]
    if wildcards.dataset in ANNOTATED_DATASETS:
        ready.append(PLACED.format(dataset=wildcards.dataset))
    return ready


def volume_dir(wildcards):
    return f"{RESULTS}/{wildcards.dataset}/volume.zarr"


def train_data(wildcards):
    """The train rule's input (TRAIN_FROM): the dataset Zarr or the placed annotations."""
    return (DATASET_ZARR if TRAIN_FROM == "dataset" else PLACED).format(dataset=wildcards.dataset)


def train_store(wildcards):
    """The store `dlpipe train` reads (TRAIN_FROM): cvat.zarr or volume.zarr."""
    name = "cvat.zarr" if TRAIN_FROM == "dataset" else "volume.zarr"
    return f"{RESULTS}/{wildcards.dataset}/{name}"


def train_labels(wildcards):
    """`--set labels="annotations"` when training from the volume: the placed annotations,
    not a dense truth that the volume may also hold (labels/phases)."""
    value = shlex.quote('labels="annotations"')
    return "" if TRAIN_FROM == "dataset" else f"--set {value}"


def model_card(wildcards):
    """The card of a prediction's model: <model> of this dataset, or <model>@<source>."""
    model, _, source = wildcards.model.partition("@")
    return f"{RESULTS}/{source or wildcards.dataset}/models/{model}/card.json"


def unet_names(dataset):
    """The U-Net segmentations of a dataset: its own models, then <model>@<source>."""
    entry = DATASETS[dataset]
    own = list(MODELS) if dataset in TRAINED_DATASETS else []
    return [*own, *(f"{m}@{src}" for src in entry.get("models_from", []) for m in MODELS)]


def baseline_training(wildcards):
    """Inputs of the baseline's training slices: the demo's truth and its annotated slices
    (metadata.json); a scan of your own trains on its placed annotations (volume_ready)."""
    if wildcards.dataset in SYNTH_DATASETS:
        root = f"{RESULTS}/{wildcards.dataset}"
        return {"labels": f"{root}/labels.tif", "meta": f"{root}/metadata.json"}
    return {}


def baseline_args(wildcards, input):
    """TRUTH and the training option of `dlpipe baseline` for the dataset."""
    if "meta" in input.keys():
        return f"{input.labels} --metadata {input.meta}"
    volume = volume_dir(wildcards)
    return f"{volume} --annotations {volume}"



def final_outputs():
    """What `snakemake` builds by default, per dataset: the tiled scan, the annotations (in
    the scan and as a dataset Zarr), every model's cleaned prediction, and with a truth the
    baselines, every evaluation and the summary."""
    targets = []
    for ds in DATASETS:
        root = f"{RESULTS}/{ds}"
        targets.append(f"{root}/volume.zarr/.dlpipe_complete")
        if ds in ANNOTATED_DATASETS:
            targets += [PLACED.format(dataset=ds), DATASET_ZARR.format(dataset=ds)]
        scored = ds in SCORED_DATASETS or ds in ANNOTATION_SCORED
        last = "clean_metrics.json" if scored else "clean.zarr/.dlpipe_complete"
        segmentations = [f"unet/{m}" for m in unet_names(ds)]
        if ds in SCORED_DATASETS and ds in ANNOTATED_DATASETS:
            segmentations += ["baselines/otsu", "baselines/rf"]
        targets += [f"{root}/{s}/{last}" for s in segmentations]
        if ds in SCORED_DATASETS and ds in TRAINED_DATASETS:
            targets.append(f"{root}/summary/models.csv")
        targets += suggest_targets(ds)
    return targets


def suggest_model(dataset):
    """The U-Net whose prediction picks the slices to correct next (suggest.model, else the
    dataset's last own U-Net: of the sweep, the one trained on the most slices; else its last
    <model>@<source>), or None without one."""
    names = unet_names(dataset)
    want = config["suggest"]["model"]
    if want is not None and want not in names:
        _refuse(f"suggest.model: {want!r} is not a U-Net of dataset {dataset!r} ({names})")
    own = [n for n in names if "@" not in n]
    return want or (own or names or [None])[-1]


def suggest_targets(dataset):
    """<results>/<dataset>/suggest/<model>/slices.json (none with suggest.count 0)."""
    model = suggest_model(dataset)
    if not config["suggest"]["count"] or model is None:
        return []
    return [f"{RESULTS}/{dataset}/suggest/{model}/slices.json"]


def _pore_prediction(wildcards):
    """The prediction a pores method is scored on: the instance-unet's, or the baseline's."""
    if wildcards.pmethod == "instance-unet":
        return f"{RESULTS}/{wildcards.dataset}/pores/instance-unet/prediction.zarr/.dlpipe_complete"
    base = wildcards.pmethod.removesuffix("-cc")
    return f"{RESULTS}/{wildcards.dataset}/baselines/{base}/prediction.zarr/.dlpipe_complete"
