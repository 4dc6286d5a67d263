# Shared helpers and the MLflow parent run of each workflow invocation.
import hashlib
import itertools
import json
import os
import re
import shlex

from dlpipe.config import validate_config
from dlpipe.summary import loss_name
from dlpipe.tracking import PARENT_ENV, end_parent_run, init_store, start_parent_run

# Snakemake's validate() fills top-level defaults only; complete nested ones too.
config.update(validate_config(config, source="config"))

RESULTS = config["results"]
LOGS = "logs"
BENCH = f"{LOGS}/benchmarks"


def _merge(base, extra):
    """``base`` deep-updated with ``extra`` (mappings merged key by key), in place."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def cfg_arg(*sections, dataset=None):
    """`--config-json FILE` with the given config sections, for a rule's shell command.

    With ``dataset``, the sections as that dataset sees them (DATASET_CONFIG of datasets.smk:
    its tile settings, synth overrides, class names). Put it in a rule's params (for a
    dataset: ``lambda wildcards: cfg_arg(..., dataset=wildcards.dataset)``) so that changing
    those sections re-runs the rule: the file is named by the hash of its JSON
    ({RESULTS}/.config/<hash>.json), so the report's item info shows that short path, not the
    JSON.
    """
    source = config if dataset is None else DATASET_CONFIG[dataset]
    payload = json.dumps({s: source[s] for s in ("results", "tracking", *sections)}, sort_keys=True)
    path = f"{RESULTS}/.config/{hashlib.sha256(payload.encode()).hexdigest()[:16]}.json"
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{payload}\n")
        os.replace(tmp, path)
    return f"--config-json {shlex.quote(path)}"


def sweep_models():
    """{model name: train overrides (dotted key -> value)} for every model of the sweep.

    With every sweep list empty: one model, train.name, with the train section as it is.
    """
    sweep, train = config["sweep"], config["train"]
    if not any(sweep.values()):
        return {train["name"]: {}}
    arch = train["architecture"]
    axes = itertools.product(
        sweep["base_filters"] or [arch["base_filters"]],
        sweep["depth"] or [arch["depth"]],
        sweep["loss"] or [loss_name(train["loss"])],
        sweep["input"] or [train["input"]],
        sweep["annotated_slices"] or [train["max_images"]],
    )
    models = {}
    for filters, depth, loss, mode, slices in axes:
        name = f"f{filters}-d{depth}-{loss}-{mode}-s{slices or 'all'}"
        over = {
            "architecture.base_filters": filters,
            "architecture.depth": depth,
            "loss": train["loss"] if loss == loss_name(train["loss"]) else {
                term: 1.0 for term in loss.split("+")
            },
            "input": mode,
            "max_images": slices,
        }
        if mode == "3d" and len(train["patch_size"]) == 2:
            over["patch_size"] = [2 ** (depth - 1), *train["patch_size"]]
        models[name] = over
    return models


MODELS = sweep_models()


# Predict, postprocess and evaluate serve any model folder
# (results/<dataset>/models/<model>/card.json); train makes only the models of the sweep.
MODEL_NAMES = "|".join(re.escape(m) for m in MODELS)


wildcard_constraints:
    model="[^/]+",


def train_overrides(wildcards):
    """`--set KEY=JSON ...` of one model of the sweep (in the train rule's params)."""
    return " ".join(
        f"--set {shlex.quote(f'{k}={json.dumps(v, sort_keys=True)}')}"
        for k, v in MODELS[wildcards.model].items()
    )


# One MLflow parent run per invocation; jobs find it in the environment. The store and
# experiment are created here, once, before any parallel job starts.


onstart:
    if config["tracking"]["enabled"] and not os.environ.get(PARENT_ENV):
        init_store(config)
        name = f"workflow {', '.join(DATASETS)}"  # the run list shows what ran
        os.environ[PARENT_ENV] = start_parent_run(config, name) or ""


onsuccess:
    end_parent_run(config, os.environ.get(PARENT_ENV), "FINISHED")


onerror:
    end_parent_run(config, os.environ.get(PARENT_ENV), "FAILED")
