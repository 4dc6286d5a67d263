# Which slices to correct next (the loop's last step): the most uncertain slices of a U-Net's
# prediction, not annotated yet, as a CVAT task with the cleaned prediction as annotations.zip.
# Correct them in CVAT, export, add them to the dataset's annotations and run again.


rule suggest:
    """`dlpipe slices VOL.zarr --suggest PRED.zarr --count N --labels CLEAN.zarr`: the
    suggest.count most uncertain slices (per-slice uncertainty that `dlpipe predict`
    records), their PNGs, slices.json (written last: the output) and annotations.zip."""
    input:
        pred=f"{DS}/unet/{{model}}/prediction.zarr/.dlpipe_complete",
        clean=f"{DS}/unet/{{model}}/clean.zarr/.dlpipe_complete",
        volume=volume_ready,
    output:
        manifest=f"{DS}/suggest/{{model}}/slices.json",
    params:
        cfg=cfg_arg("suggest"),
        volume=volume_dir,
        pred=lambda wildcards, input: os.path.dirname(input.pred),
        clean=lambda wildcards, input: os.path.dirname(input.clean),
        axes=" ".join(f"--axis {a}" for a in config["suggest"]["axes"]),
        n=config["suggest"]["count"],
        gap=config["suggest"]["min_gap"],
        out=lambda wildcards, output: os.path.dirname(output.manifest),
    log:
        f"{DS_LOGS}/suggest_{{model}}.log",
    benchmark:
        f"{DS_BENCH}/suggest_{{model}}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.model} slices {params.volume}"
        " --suggest {params.pred} --count {params.n} {params.axes} --min-gap {params.gap}"
        " --labels {params.clean} --out {params.out} --overwrite > {log} 2>&1"
