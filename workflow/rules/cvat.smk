# A dataset's CVAT export, twice: into the scan it was sliced from (labels/annotations) and
# as a dataset Zarr of the annotated images. TRAIN_FROM (datasets.smk) picks what train reads.


rule cvat:
    """CVAT export -> Zarr dataset (images, semantic, instances, objects.parquet)."""
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    input:
        export=annotations_input,
    output:
        # The store appears by one rename when complete; the marker inside is written last.
        done=DATASET_ZARR,
    params:
        cfg=lambda wildcards: cfg_arg("cvat", dataset=wildcards.dataset),
        images=images_option,
        out=lambda wildcards, output: os.path.dirname(output.done),
    log:
        f"{DS_LOGS}/cvat.log",
    benchmark:
        f"{DS_BENCH}/cvat.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} cvat {input.export:q} {params.images} --out {params.out} "
        "--overwrite > {log} 2>&1"


rule place:
    """CVAT export -> the scan: masks written at their slices, VOL.zarr/labels/annotations
    (255 = not annotated; `dlpipe cvat --volume`). The marker is written after the command."""
    wildcard_constraints:
        dataset=_alternatives(ANNOTATED_DATASETS),
    input:
        export=annotations_input,
        volume=VOLUME,
    output:
        done=PLACED,
    params:
        cfg=lambda wildcards: cfg_arg("cvat", dataset=wildcards.dataset),
        volume=volume_dir,
    # Cheap, and every reader of the scan waits for it: run it before the training.
    priority: 1
    log:
        f"{DS_LOGS}/place.log",
    benchmark:
        f"{DS_BENCH}/place.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} cvat {input.export:q} --volume {params.volume} --overwrite"
        " > {log} 2>&1 && touch {output.done}"
