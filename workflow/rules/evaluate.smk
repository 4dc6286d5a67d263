# Classical baselines, clean-up and evaluation (docs/evaluation.md). postprocess and
# evaluate serve every segmentation of a dataset: <results>/<dataset>/baselines/<method>/ and
# <results>/<dataset>/unet/<model>/. Baselines need a truth (SCORED_DATASETS); evaluation
# without one gives the annotation score of an annotated scan (ANNOTATION_SCORED).


wildcard_constraints:
    method="otsu|rf",
    kind="baselines|unet",
    name="[^/]+",


rule baseline:
    """Multi-Otsu or random-forest segmentation trained on the annotated slices, evaluated."""
    wildcard_constraints:
        dataset=_alternatives([d for d in SCORED_DATASETS if d in ANNOTATED_DATASETS]),
    input:
        unpack(baseline_training),
        volume=volume_ready,
    output:
        pred=f"{DS}/baselines/{{method}}/prediction.zarr/.dlpipe_complete",
        metrics=f"{DS}/baselines/{{method}}/metrics.json",
    params:
        cfg=lambda wildcards: cfg_arg("evaluation", "baselines", dataset=wildcards.dataset),
        volume=volume_dir,
        truth=baseline_args,
        pred=lambda wildcards, output: os.path.dirname(output.pred),
    log:
        f"{DS_LOGS}/baseline_{{method}}.log",
    benchmark:
        f"{DS_BENCH}/baseline_{{method}}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.method} baseline {params.volume} {params.truth} --method {wildcards.method}"
        " --out {params.pred} --metrics {output.metrics} --overwrite"
        " > {log} 2>&1"


rule postprocess:
    """Connected components across chunks, blob table and rule-based clean-up."""
    input:
        pred=f"{DS}/{{kind}}/{{name}}/prediction.zarr/.dlpipe_complete",
    output:
        clean=f"{DS}/{{kind}}/{{name}}/clean.zarr/.dlpipe_complete",
        blobs=f"{DS}/{{kind}}/{{name}}/clean.blobs.csv",
        changes=f"{DS}/{{kind}}/{{name}}/clean.changes.csv",
    params:
        cfg=cfg_arg("postprocess"),
        pred=lambda wildcards, input: os.path.dirname(input.pred),
        clean=lambda wildcards, output: os.path.dirname(output.clean),
    log:
        f"{DS_LOGS}/postprocess_{{kind}}_{{name}}.log",
    benchmark:
        f"{DS_BENCH}/postprocess_{{kind}}_{{name}}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.name} postprocess {params.pred} --out {params.clean}"
        " --blobs {output.blobs} --changes {output.changes} --overwrite > {log} 2>&1"


rule evaluate:
    """Per-class Jaccard of the cleaned prediction against the tiled truth (test split); for
    a scan without a truth, the annotation score (its held-out annotated slices)."""
    wildcard_constraints:
        dataset=_alternatives(SCORED_DATASETS + ANNOTATION_SCORED),
    input:
        pred=f"{DS}/{{kind}}/{{name}}/clean.zarr/.dlpipe_complete",
        truth=volume_ready,
    output:
        metrics=f"{DS}/{{kind}}/{{name}}/clean_metrics.json",
        csv=f"{DS}/{{kind}}/{{name}}/clean_metrics.csv",
        table=report(
            f"{DS}/{{kind}}/{{name}}/clean_metrics.html",
            caption="../report/metrics.rst",
            category="Evaluation",
            subcategory="{dataset}: {kind}/{name}",
            labels={"dataset": "{dataset}", "segmentation": "{kind}/{name}", "file": "per-class metrics"},
        ),
        plots=report(
            directory(f"{DS}/{{kind}}/{{name}}/clean_metrics_plots"),
            patterns=["{figure}.png"],
            caption="../report/evaluation_plots.rst",
            category="Evaluation",
            subcategory="{dataset}: {kind}/{name}",
            labels={"dataset": "{dataset}", "segmentation": "{kind}/{name}", "figure": "{figure}"},
        ),
    params:
        cfg=lambda wildcards: cfg_arg("evaluation", dataset=wildcards.dataset),
        pred=lambda wildcards, input: os.path.dirname(input.pred),
        truth=volume_dir,
        # No truth: score the held-out annotated slices (docs/evaluation.md).
        annotations=lambda wildcards: "--annotations" if wildcards.dataset in ANNOTATION_SCORED else "",
    log:
        f"{DS_LOGS}/evaluate_{{kind}}_{{name}}.log",
    benchmark:
        f"{DS_BENCH}/evaluate_{{kind}}_{{name}}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.name} evaluate {params.pred} {params.truth} {params.annotations} --out {output.metrics}"
        " > {log} 2>&1"
