rule train:
    """U-Net training on a dataset's CVAT-annotated slices (`dlpipe train --model unet`).

    One job per dataset and model of the sweep (common.smk: MODELS); the model's settings are
    the train section plus its overrides. Reads what TRAIN_FROM says (datasets.smk: the CVAT
    stage's Zarr dataset, or the annotations placed into the scan); writes the model folder,
    whose card.json (written last) is the output. A killed job, re-run, resumes from
    checkpoints/last.pt when the settings match (--resume-or-start).
    """
    wildcard_constraints:
        model=MODEL_NAMES,
        dataset=_alternatives(TRAINED_DATASETS),
    input:
        train_data,
    output:
        card=f"{DS}/models/{{model}}/card.json",
        loss=report(
            f"{DS}/models/{{model}}/plots/loss.png",
            caption="../report/train_curves.rst",
            category="Models",
            subcategory="{dataset}: {model}",
            labels={"dataset": "{dataset}", "model": "{model}", "figure": "loss"},
        ),
        jaccard=report(
            f"{DS}/models/{{model}}/plots/jaccard.png",
            caption="../report/train_curves.rst",
            category="Models",
            subcategory="{dataset}: {model}",
            labels={"dataset": "{dataset}", "model": "{model}", "figure": "validation Jaccard"},
        ),
    params:
        cfg=cfg_arg("train"),
        overrides=train_overrides,
        labels=train_labels,
        store=train_store,
        out=lambda wildcards, output: os.path.dirname(output.card),
    log:
        f"{DS_LOGS}/train_{{model}}.log",
    benchmark:
        f"{DS_BENCH}/train_{{model}}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        # One GPU per training job: the workstation profile's gpu limit also keeps the sweep's
        # trainings from sharing one (on a CPU-only machine: from sharing its cores).
        gpu=1,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.model} train --model unet {params.store} --out {params.out}"
        " {params.overrides} {params.labels} --resume-or-start > {log} 2>&1"
