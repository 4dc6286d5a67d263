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
