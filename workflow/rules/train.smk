rule train:
    """U-Net training on the tiled demo volume (`dlpipe train --model unet`).

    Needs the tile stage's completion marker; writes the model folder, whose card.json
    (written last) is the output. Not part of final_outputs() yet.
    """
    input:
        f"{RESULTS}/demo/volume.zarr/.dlpipe_complete",
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
