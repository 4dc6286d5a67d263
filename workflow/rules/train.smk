rule train:
    """U-Net training on the CVAT-annotated demo slices (`dlpipe train --model unet`).

    Reads the CVAT stage's Zarr dataset (only the annotated slices carry labels); writes
    the model folder, whose card.json (written last) is the output.
    """
    input:
        f"{RESULTS}/demo/cvat.zarr/.dlpipe_complete",
    output:
        card=f"{RESULTS}/models/{config['train']['name']}/card.json",
    params:
        cfg=cfg_arg("train"),
        store=lambda wildcards, input: os.path.dirname(input[0]),
        out=lambda wildcards, output: os.path.dirname(output.card),
    log:
        f"{LOGS}/train_{config['train']['name']}.log",
    benchmark:
        f"{BENCH}/train_{config['train']['name']}.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "dlpipe {params.cfg} train --model unet {params.store} --out {params.out} --overwrite"
        " > {log} 2>&1"
