# Classical baselines, clean-up and evaluation (docs/evaluation.md). postprocess and
# evaluate serve every segmentation: {RESULTS}/baselines/<method>/ and {RESULTS}/unet/<model>/.


wildcard_constraints:
    method="otsu|rf",
    kind="baselines|unet",
    name="[^/]+",


rule baseline:
    """Multi-Otsu or random-forest segmentation trained on the annotated slices, evaluated."""
    input:
        volume=f"{RESULTS}/demo/volume.zarr/.dlpipe_complete",
        labels=f"{RESULTS}/demo/labels.tif",
        meta=f"{RESULTS}/demo/metadata.json",
    output:
        pred=f"{RESULTS}/baselines/{{method}}/prediction.zarr/.dlpipe_complete",
        metrics=f"{RESULTS}/baselines/{{method}}/metrics.json",
    params:
        cfg=cfg_arg("evaluation", "baselines"),
        volume=lambda wildcards, input: os.path.dirname(input.volume),
        pred=lambda wildcards, output: os.path.dirname(output.pred),
    log:
        f"{LOGS}/baseline_{{method}}.log",
    benchmark:
        f"{BENCH}/baseline_{{method}}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "dlpipe {params.cfg} --dataset demo --model-name {wildcards.method} baseline {params.volume} {input.labels} --method {wildcards.method}"
        " --metadata {input.meta} --out {params.pred} --metrics {output.metrics} --overwrite"
        " > {log} 2>&1"


rule postprocess:
    """Connected components across chunks, blob table and rule-based clean-up."""
    input:
        pred=f"{RESULTS}/{{kind}}/{{name}}/prediction.zarr/.dlpipe_complete",
    output:
        clean=f"{RESULTS}/{{kind}}/{{name}}/clean.zarr/.dlpipe_complete",
        blobs=f"{RESULTS}/{{kind}}/{{name}}/clean.blobs.csv",
        changes=f"{RESULTS}/{{kind}}/{{name}}/clean.changes.csv",
    params:
        cfg=cfg_arg("postprocess"),
        pred=lambda wildcards, input: os.path.dirname(input.pred),
        clean=lambda wildcards, output: os.path.dirname(output.clean),
    log:
        f"{LOGS}/postprocess_{{kind}}_{{name}}.log",
    benchmark:
        f"{BENCH}/postprocess_{{kind}}_{{name}}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "dlpipe {params.cfg} --dataset demo --model-name {wildcards.name} postprocess {params.pred} --out {params.clean}"
        " --blobs {output.blobs} --changes {output.changes} --overwrite > {log} 2>&1"


rule evaluate:
    """Per-class Jaccard of the cleaned prediction against the tiled truth (test split)."""
    input:
        pred=f"{RESULTS}/{{kind}}/{{name}}/clean.zarr/.dlpipe_complete",
        truth=f"{RESULTS}/demo/volume.zarr/.dlpipe_complete",
    output:
        metrics=f"{RESULTS}/{{kind}}/{{name}}/clean_metrics.json",
        csv=report(
            f"{RESULTS}/{{kind}}/{{name}}/clean_metrics.csv",
            caption="../report/metrics.rst",
            category="Evaluation",
            subcategory="{kind}/{name}",
            labels={"segmentation": "{kind}/{name}", "file": "per-class metrics"},
        ),
        plots=report(
            directory(f"{RESULTS}/{{kind}}/{{name}}/clean_metrics_plots"),
            patterns=["{figure}.png"],
            caption="../report/evaluation_plots.rst",
            category="Evaluation",
            subcategory="{kind}/{name}",
            labels={"segmentation": "{kind}/{name}", "figure": "{figure}"},
        ),
    params:
        cfg=cfg_arg("evaluation"),
        pred=lambda wildcards, input: os.path.dirname(input.pred),
        truth=lambda wildcards, input: os.path.dirname(input.truth),
    log:
        f"{LOGS}/evaluate_{{kind}}_{{name}}.log",
    benchmark:
        f"{BENCH}/evaluate_{{kind}}_{{name}}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "dlpipe {params.cfg} --dataset demo --model-name {wildcards.name} evaluate {params.pred} {params.truth} --out {output.metrics}"
        " > {log} 2>&1"
