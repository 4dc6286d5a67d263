rule cvat:
    """CVAT export of the demo -> Zarr dataset (images, semantic, instances, objects.parquet)."""
    input:
        xml=f"{RESULTS}/demo/cvat/annotations.xml",
    output:
        # The store appears by one rename when complete; the marker inside is written last.
        done=f"{RESULTS}/demo/cvat.zarr/.dlpipe_complete",
    params:
        cfg=cfg_arg("cvat"),
        images=lambda wildcards, input: os.path.join(os.path.dirname(input.xml), "images"),
        out=lambda wildcards, output: os.path.dirname(output.done),
    log:
        f"{LOGS}/cvat.log",
    benchmark:
        f"{BENCH}/cvat.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "dlpipe {params.cfg} --dataset demo cvat {input.xml} --images {params.images} --out {params.out} "
        "--overwrite > {log} 2>&1"
