rule synth:
    """The built-in demo data: a synthetic CT scan with exact labels and a CVAT export."""
    output:
        volume=f"{RESULTS}/demo/volume.tif",
        labels=f"{RESULTS}/demo/labels.tif",
        cvat=f"{RESULTS}/demo/cvat/annotations.xml",
        meta=f"{RESULTS}/demo/metadata.json",
    params:
        cfg=cfg_arg("synth"),
        out=lambda wildcards, output: os.path.dirname(output.volume),
    log:
        f"{LOGS}/synth.log",
    benchmark:
        f"{BENCH}/synth.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "dlpipe {params.cfg} --dataset demo synth {params.out} --overwrite > {log} 2>&1"
