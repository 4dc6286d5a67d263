rule train:
    """U-Net training on the CVAT-annotated demo slices (`dlpipe train --model unet`).

    One job per model of the sweep (common.smk: MODELS); the model's settings are the
    train section plus its overrides. Reads the CVAT stage's Zarr dataset; writes the model
    folder, whose card.json (written last) is the output. A killed job, re-run, resumes from
    checkpoints/last.pt when the settings match (--resume-or-start).
    """
    wildcard_constraints:
        model=MODEL_NAMES,
    input:
        f"{RESULTS}/demo/cvat.zarr/.dlpipe_complete",
    output:
        card=report(
            f"{RESULTS}/models/{{model}}/card.json",
            caption="../report/card.rst",
            category="Models",
            subcategory="{model}",
            labels={"model": "{model}", "file": "card.json"},
        ),
        loss=report(
            f"{RESULTS}/models/{{model}}/plots/loss.png",
            caption="../report/train_curves.rst",
            category="Models",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "loss"},
        ),
        jaccard=report(
            f"{RESULTS}/models/{{model}}/plots/jaccard.png",
            caption="../report/train_curves.rst",
            category="Models",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "validation Jaccard"},
        ),
    params:
        cfg=cfg_arg("train"),
        overrides=train_overrides,
        store=lambda wildcards, input: os.path.dirname(input[0]),
        out=lambda wildcards, output: os.path.dirname(output.card),
    log:
        f"{LOGS}/train_{{model}}.log",
    benchmark:
        f"{BENCH}/train_{{model}}.tsv"
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
        "dlpipe {params.cfg} --dataset demo --model-name {wildcards.model} train --model unet {params.store} --out {params.out}"
        " {params.overrides} --resume-or-start > {log} 2>&1"
