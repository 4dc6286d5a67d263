rule tile:
    """The demo volume and its labels into a chunked OME-Zarr pyramid (docs/volumes.md).

    The store is filled in place, so the output is its completion marker, written last.
    A killed job re-run resumes the finished slabs.
    """
    input:
        volume=f"{RESULTS}/demo/volume.tif",
        labels=f"{RESULTS}/demo/labels.tif",
    output:
        marker=f"{RESULTS}/demo/volume.zarr/.dlpipe_complete",
    params:
        cfg=cfg_arg("tile"),
        out=lambda wildcards, output: os.path.dirname(output.marker),
    log:
        f"{LOGS}/tile.log",
    benchmark:
        f"{BENCH}/tile.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=lambda wildcards: config["tile"]["memory_budget_mb"] + 256,
        runtime=30,
    shell:
        "dlpipe {params.cfg} --dataset demo tile {input.volume} --labels {input.labels} --out {params.out}"
        " --overwrite > {log} 2>&1"
