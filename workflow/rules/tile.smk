rule tile:
    """A dataset's scan and its truth (if any) into a chunked OME-Zarr pyramid (docs/volumes.md).

    The store is filled in place, so the output is its completion marker, written last.
    A killed job re-run resumes the finished slabs. A truth of another shape than the scan is
    refused here (`dlpipe tile` names both).
    """
    input:
        unpack(lambda wildcards: {"volume": _path_part(scan_input(wildcards))}),
        unpack(truth_input),
    output:
        marker=VOLUME,
    params:
        cfg=lambda wildcards: cfg_arg("tile", dataset=wildcards.dataset),
        scan=lambda wildcards: shlex.quote(scan_input(wildcards)),
        labels=lambda wildcards, input: (
            f"--labels {shlex.quote(input.labels)}" if "labels" in input.keys() else ""
        ),
        out=lambda wildcards, output: os.path.dirname(output.marker),
    log:
        f"{DS_LOGS}/tile.log",
    benchmark:
        f"{DS_BENCH}/tile.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=lambda wildcards: DATASET_CONFIG[wildcards.dataset]["tile"]["memory_budget_mb"]
        + 256,
        runtime=30,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} tile {params.scan} {params.labels} --out {params.out}"
        " --overwrite > {log} 2>&1"
