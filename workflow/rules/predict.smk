# Chunked prediction of each dataset's scan with each U-Net of the sweep ({model}): its own,
# or <model>@<source>, trained on dataset <source> (datasets.<name>.models_from).
# predict.slabs > 1 splits the volume into z-slab jobs (one GPU each) and gathers them.
# predict.scheduler "local-cluster:N" runs the blocks on a dask.distributed LocalCluster.
PRED = f"{DS}/unet/{{model}}/prediction.zarr"
PRED_SLABS = int(config["predict"]["slabs"])
# A prediction job asks for every core of the machine (Snakemake caps it at --cores and sets
# OMP_NUM_THREADS, which predict's torch threads follow), or predict.threads if that is more.
PRED_CORES = max(int(config["predict"]["threads"]), os.cpu_count() or 1)

if PRED_SLABS == 1:

    rule predict:
        """Predict a dataset's scan block by block into OME-Zarr labels (resumes if killed)."""
        input:
            card=model_card,
            volume=volume_ready,
        output:
            f"{PRED}/.dlpipe_complete",
        params:
            cfg=cfg_arg("predict"),
            model=lambda wildcards, input: os.path.dirname(input.card),
            volume=volume_dir,
            out=lambda wildcards, output: os.path.dirname(output[0]),
        log:
            f"{DS_LOGS}/predict_{{model}}.log",
        benchmark:
            f"{DS_BENCH}/predict_{{model}}.tsv"
        conda:
            "../../envs/dlpipe.yaml"
        threads: PRED_CORES
        resources:
            mem_mb=4000,
            runtime=120,
        shell:
            "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.model} predict {params.model} {params.volume} --out {params.out} --resume --overwrite > {log} 2>&1"

else:

    rule predict_prepare:
        """Create the prediction store and its manifest (block layout) for the slab jobs."""
        input:
            card=model_card,
            volume=volume_ready,
        output:
            f"{PRED}.slabs/prepared",
        params:
            cfg=cfg_arg("predict"),
            model=lambda wildcards, input: os.path.dirname(input.card),
            volume=volume_dir,
            out=lambda wildcards, output: os.path.dirname(output[0]).removesuffix(".slabs"),
        log:
            f"{DS_LOGS}/predict_prepare_{{model}}.log",
        benchmark:
            f"{DS_BENCH}/predict_prepare_{{model}}.tsv"
        conda:
            "../../envs/dlpipe.yaml"
        resources:
            mem_mb=2000,
            runtime=10,
        shell:
            "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.model} predict {params.model} {params.volume} --out {params.out} --prepare --resume --overwrite > {log} 2>&1 && touch {output}"

    rule predict_slab:
        """Predict the blocks of one z-slab (one GPU job each)."""
        input:
            card=model_card,
            volume=volume_ready,
            prepared=f"{PRED}.slabs/prepared",
        output:
            f"{PRED}.slabs/{{slab}}.done",
        params:
            cfg=cfg_arg("predict"),
            model=lambda wildcards, input: os.path.dirname(input.card),
            volume=volume_dir,
            out=lambda wildcards, output: os.path.dirname(output[0]).removesuffix(".slabs"),
            n=PRED_SLABS,
        log:
            f"{DS_LOGS}/predict_slab_{{model}}_{{slab}}.log",
        benchmark:
            f"{DS_BENCH}/predict_slab_{{model}}_{{slab}}.tsv"
        conda:
            "../../envs/dlpipe.yaml"
        threads: PRED_CORES
        resources:
            mem_mb=4000,
            runtime=120,
            gpu=1,
        shell:
            "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.model} predict {params.model} {params.volume} --out {params.out} --slab {wildcards.slab} {params.n} > {log} 2>&1 && touch {output}"

    rule predict:
        """Gather the slab jobs: mark the prediction complete once every block is done."""
        input:
            card=model_card,
            volume=volume_ready,
            slabs=expand(f"{PRED}.slabs/{{slab}}.done", slab=range(PRED_SLABS), allow_missing=True),
        output:
            f"{PRED}/.dlpipe_complete",
        params:
            cfg=cfg_arg("predict"),
            model=lambda wildcards, input: os.path.dirname(input.card),
            volume=volume_dir,
            out=lambda wildcards, output: os.path.dirname(output[0]),
        log:
            f"{DS_LOGS}/predict_gather_{{model}}.log",
        benchmark:
            f"{DS_BENCH}/predict_gather_{{model}}.tsv"
        conda:
            "../../envs/dlpipe.yaml"
        resources:
            mem_mb=1000,
            runtime=10,
        shell:
            "dlpipe {params.cfg} --dataset {wildcards.dataset} --model-name {wildcards.model} predict {params.model} {params.volume} --out {params.out} --gather > {log} 2>&1"
