# Mask R-CNN instance segmentation of each annotated dataset (docs/instances.md): train on
# the CVAT dataset's instances (fibres and pores), predict its images tile by tile, score the
# instances. Planned by default only with `instances: {enabled: true}` (INSTANCE_TARGETS).
INST = config["instances"]
INST_MODEL = f"{DS}/models/{INST['model']}"
INST_OUT = f"{DS}/instances/{INST['model']}"


rule train_maskrcnn:
    """Mask R-CNN training on a CVAT dataset Zarr (`dlpipe train --model maskrcnn`)."""
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    input:
        DATASET_ZARR,
    output:
        card=f"{INST_MODEL}/card.json",
    params:
        cfg=cfg_arg("train"),
        store=lambda wildcards, input: os.path.dirname(input[0]),
        out=lambda wildcards, output: os.path.dirname(output.card),
        sets=" ".join(
            f"--set {k}={v}"
            for k, v in (
                ("steps_per_epoch", INST["steps_per_epoch"]),
                ("lr", INST["lr"]),
                ("maskrcnn.tile_size", INST["tile_size"]),
            )
        ),
        epochs=INST["epochs"],
    log:
        f"{DS_LOGS}/train_{INST['model']}.log",
    benchmark:
        f"{DS_BENCH}/train_{INST['model']}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} train --model maskrcnn {params.store} --out {params.out}"
        " --epochs {params.epochs} {params.sets} --resume-or-start > {log} 2>&1"


rule predict_instances:
    """Instances of every image of the CVAT dataset, tiled with merging across tiles."""
    input:
        card=f"{INST_MODEL}/card.json",
        data=DATASET_ZARR,
    output:
        done=f"{INST_OUT}/prediction.zarr/.dlpipe_complete",
    params:
        cfg=cfg_arg("predict"),
        model=lambda wildcards, input: os.path.dirname(input.card),
        data=lambda wildcards, input: os.path.dirname(input.data),
        out=lambda wildcards, output: os.path.dirname(output.done),
    log:
        f"{DS_LOGS}/predict_instances_{INST['model']}.log",
    benchmark:
        f"{DS_BENCH}/predict_instances_{INST['model']}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} predict {params.model} {params.data} --out {params.out}"
        " --overwrite > {log} 2>&1"


rule evaluate_instances:
    """AP@[.50:.95], AP50, AP75 and F1@0.5 of the predicted instances against the CVAT ones."""
    input:
        pred=f"{INST_OUT}/prediction.zarr/.dlpipe_complete",
        truth=DATASET_ZARR,
    output:
        metrics=f"{INST_OUT}/metrics.json",
        csv=f"{INST_OUT}/metrics.csv",
    params:
        cfg=cfg_arg("evaluation"),
        pred=lambda wildcards, input: os.path.dirname(input.pred),
        truth=lambda wildcards, input: os.path.dirname(input.truth),
    log:
        f"{DS_LOGS}/evaluate_instances_{INST['model']}.log",
    benchmark:
        f"{DS_BENCH}/evaluate_instances_{INST['model']}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} evaluate --instances {params.pred} {params.truth}"
        " --out {output.metrics} > {log} 2>&1"


# What the default target adds when instances.enabled is on (wired into rule all in the
# Snakefile); `snakemake instances` builds it whatever the switch says.
INSTANCE_ALL = expand(f"{INST_OUT}/metrics.json", dataset=ANNOTATED_DATASETS)
INSTANCE_TARGETS = INSTANCE_ALL if INST["enabled"] else []


rule instances:
    """The instance-segmentation targets: `snakemake --cores 8 instances`."""
    input:
        INSTANCE_ALL,


# ----------------------------------------------------------------- the demo's pores as instances
# synth writes the truth pore instances (pore_instances.tif, one id per pore ellipsoid); the
# scan is tiled again with them (labels/pore_instances), an instance-unet trains on them and
# predicts the test slab; `dlpipe evaluate --instances` scores it and the floor (the
# connected components of the baseline's pore class) against the truth instances, on the
# test slab; the pores table goes to summary/pores.csv and the report.
PORES = config["instances"]["pores"]
PORES_DIR = f"{DS}/pores"
PORES_VOLUME = f"{PORES_DIR}/volume.zarr/.dlpipe_complete"
PORE_METHODS = ["instance-unet", f"{PORES['floor']}-cc"]


rule tile_pores:
    """The scan with its phases and the truth pore instances (`dlpipe tile --instances`)."""
    wildcard_constraints:
        dataset=_alternatives(SYNTH_DATASETS),
    input:
        volume=f"{DS}/volume.tif",
        labels=f"{DS}/labels.tif",
        instances=f"{DS}/pore_instances.tif",
    output:
        marker=PORES_VOLUME,
    params:
        cfg=lambda wildcards: cfg_arg("tile", dataset=wildcards.dataset),
        out=lambda wildcards, output: os.path.dirname(output.marker),
    log:
        f"{DS_LOGS}/tile_pores.log",
    benchmark:
        f"{DS_BENCH}/tile_pores.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} tile {input.volume} --labels {input.labels}"
        " --instances {input.instances} --out {params.out} --overwrite > {log} 2>&1"


rule train_instance_unet:
    """instance-unet on the truth pore instances (`dlpipe train --model instance-unet`)."""
    wildcard_constraints:
        dataset=_alternatives(SYNTH_DATASETS),
    input:
        PORES_VOLUME,
    output:
        card=f"{DS}/models/instance-unet/card.json",
    params:
        cfg=cfg_arg("train"),
        store=lambda wildcards, input: os.path.dirname(input[0]),
        out=lambda wildcards, output: os.path.dirname(output.card),
        sets=" ".join(
            f"--set {k}={v}"
            for k, v in (
                ("input", PORES["input"]),
                ("steps_per_epoch", PORES["steps_per_epoch"]),
                ("instance_unet.class_name", "pore"),
            )
        ),
        epochs=PORES["epochs"],
    log:
        f"{DS_LOGS}/train_instance-unet.log",
    benchmark:
        f"{DS_BENCH}/train_instance-unet.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name instance-unet train --model instance-unet"
        " {params.store} --out {params.out} --epochs {params.epochs} {params.sets} --resume-or-start > {log} 2>&1"


rule predict_instance_unet:
    """The pores of the test slab, block by block (`dlpipe predict` with the instance-unet)."""
    input:
        card=f"{DS}/models/instance-unet/card.json",
        volume=PORES_VOLUME,
    output:
        done=f"{PORES_DIR}/instance-unet/prediction.zarr/.dlpipe_complete",
    params:
        cfg=cfg_arg("predict"),
        model=lambda wildcards, input: os.path.dirname(input.card),
        volume=lambda wildcards, input: os.path.dirname(input.volume),
        out=lambda wildcards, output: os.path.dirname(output.done),
    log:
        f"{DS_LOGS}/predict_instance-unet.log",
    benchmark:
        f"{DS_BENCH}/predict_instance-unet.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} predict {params.model} {params.volume} --out {params.out}"
        " --set instance_unet.slices=test --overwrite > {log} 2>&1"


rule evaluate_pores:
    """F1, PQ, count error and size distance of the pores on the test slab, against the
    truth pore instances (`dlpipe evaluate --instances`, `--components pore` for the floor)."""
    wildcard_constraints:
        dataset=_alternatives(SYNTH_DATASETS),
        pmethod="instance-unet|otsu-cc|rf-cc",
    input:
        pred=_pore_prediction,
        truth=PORES_VOLUME,
    output:
        metrics=f"{PORES_DIR}/{{pmethod}}/metrics.json",
        csv=f"{PORES_DIR}/{{pmethod}}/metrics.csv",
    params:
        cfg=cfg_arg("evaluation"),
        pred=lambda wildcards, input: os.path.dirname(input.pred),
        truth=lambda wildcards, input: os.path.dirname(input.truth),
        components=lambda wildcards: (
            "" if wildcards.pmethod == "instance-unet" else "--components pore"
        ),
    log:
        f"{DS_LOGS}/evaluate_pores_{{pmethod}}.log",
    benchmark:
        f"{DS_BENCH}/evaluate_pores_{{pmethod}}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.pmethod} evaluate --instances"
        " {params.pred} {params.truth} {params.components} --out {output.metrics} --overwrite > {log} 2>&1"


rule pores_summary:
    """The pores table: one row per method (summary/pores.csv, and the report's page)."""
    wildcard_constraints:
        dataset=_alternatives(SYNTH_DATASETS),
    input:
        metrics=expand(f"{PORES_DIR}/{{pmethod}}/metrics.json", pmethod=PORE_METHODS, allow_missing=True),
    output:
        csv=f"{DS}/summary/pores.csv",
        html=report(
            f"{DS}/summary/pores.html",
            caption="../report/pores.rst",
            category="Summary",
            subcategory="{dataset}",
            labels={"figure": "pores as instances"},
        ),
    log:
        f"{DS_LOGS}/pores_summary.log",
    benchmark:
        f"{DS_BENCH}/pores_summary.tsv"
    params:
        cfg=cfg_arg(),
        out=lambda wildcards, output: os.path.dirname(output.csv),
    conda:
        "../../envs/dlpipe.yaml"
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} summary {input.metrics} --instances pores"
        " --out {params.out} --overwrite > {log} 2>&1"


PORES_ALL = expand(f"{DS}/summary/pores.csv", dataset=SYNTH_DATASETS)
INSTANCE_TARGETS = INSTANCE_TARGETS + (PORES_ALL if PORES["enabled"] else [])


rule pores:
    """The pores targets: `snakemake --cores 2 pores`."""
    input:
        PORES_ALL,
