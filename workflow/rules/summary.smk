# The sweep's summary: one table of every model and the comparison plots (docs/workflow.md).


rule summary:
    """Table (CSV) of every model of the sweep and of the baselines, and the plots: per-phase
    Jaccard against the number of parameters and against the number of annotated slices
    (learning curve), the baselines as dashed lines."""
    input:
        cards=expand(f"{RESULTS}/models/{{model}}/card.json", model=MODELS),
        metrics=expand(f"{RESULTS}/unet/{{model}}/clean_metrics.json", model=MODELS),
        baselines=expand(
            f"{RESULTS}/baselines/{{method}}/clean_metrics.json", method=["otsu", "rf"]
        ),
    output:
        params_plot=report(
            f"{RESULTS}/summary/jaccard_vs_parameters.png",
            caption="../report/summary_plots.rst",
            category="Summary",
            labels={"figure": "Jaccard vs parameters"},
        ),
        curve=report(
            f"{RESULTS}/summary/learning_curve.png",
            caption="../report/summary_plots.rst",
            category="Summary",
            labels={"figure": "learning curve"},
        ),
        table=report(
            f"{RESULTS}/summary/models.csv",
            caption="../report/summary_table.rst",
            category="Summary",
            labels={"figure": "table of models"},
        ),
    params:
        cfg=cfg_arg(),
        baselines=lambda wildcards, input: " ".join(f"--baseline {b}" for b in input.baselines),
        models=lambda wildcards, input: os.path.dirname(os.path.dirname(input.cards[0])),
        bench=BENCH,
        out=lambda wildcards, output: os.path.dirname(output.table),
    log:
        f"{LOGS}/summary.log",
    benchmark:
        f"{BENCH}/summary.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "dlpipe {params.cfg} --dataset demo summary {input.metrics} --models {params.models}"
        " {params.baselines} --bench {params.bench} --out {params.out} > {log} 2>&1"
