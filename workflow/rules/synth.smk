rule synth:
    """The built-in demo data: a synthetic CT scan with exact labels and a CVAT export."""
    wildcard_constraints:
        dataset=_alternatives(SYNTH_DATASETS),
    output:
        volume=f"{DS}/volume.tif",
        labels=f"{DS}/labels.tif",
        instances=f"{DS}/pore_instances.tif",
        cvat=f"{DS}/cvat/annotations.xml",
        meta=f"{DS}/metadata.json",
    params:
        cfg=lambda wildcards: cfg_arg("synth", dataset=wildcards.dataset),
        out=lambda wildcards, output: os.path.dirname(output.volume),
    log:
        f"{DS_LOGS}/synth.log",
    benchmark:
        f"{DS_BENCH}/synth.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} synth {params.out} --overwrite > {log} 2>&1"
