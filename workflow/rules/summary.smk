# The sweep's summary per dataset: one table of its own models and baselines and the
# comparison plots (docs/workflow.md), for datasets with a truth.


rule summary:
    """Table (CSV) of every model of the sweep and of the baselines, and the plots: per-phase
    Jaccard against the number of parameters and against the number of annotated slices
    (learning curve), the baselines as dashed lines."""
    wildcard_constraints:
        dataset=_alternatives([d for d in SCORED_DATASETS if d in TRAINED_DATASETS]),
    input:
        cards=expand(f"{DS}/models/{{model}}/card.json", model=MODELS, allow_missing=True),
        metrics=expand(f"{DS}/unet/{{model}}/clean_metrics.json", model=MODELS, allow_missing=True),
        baselines=expand(
            f"{DS}/baselines/{{method}}/clean_metrics.json",
            method=["otsu", "rf"],
            allow_missing=True,
        ),
    output:
        params_plot=report(
            f"{DS}/summary/jaccard_vs_parameters.png",
            caption="../report/summary_plots.rst",
            category="Summary",
            subcategory="{dataset}",
            labels={"figure": "Jaccard vs parameters"},
        ),
        curve=report(
            f"{DS}/summary/learning_curve.png",
            caption="../report/summary_plots.rst",
            category="Summary",
            subcategory="{dataset}",
            labels={"figure": "learning curve"},
        ),
        table=f"{DS}/summary/models.csv",
        table_html=report(
            f"{DS}/summary/models.html",
            caption="../report/summary_table.rst",
            category="Summary",
            subcategory="{dataset}",
            labels={"figure": "table of models"},
        ),
        cards=report(
            f"{DS}/summary/cards.html",
            caption="../report/card.rst",
            category="Summary",
            subcategory="{dataset}",
            labels={"figure": "model cards"},
        ),
    params:
        cfg=cfg_arg(),
        baselines=lambda wildcards, input: " ".join(f"--baseline {b}" for b in input.baselines),
        models=lambda wildcards, input: os.path.dirname(os.path.dirname(input.cards[0])),
        bench=lambda wildcards: f"{BENCH}/{wildcards.dataset}",
        out=lambda wildcards, output: os.path.dirname(output.table),
    log:
        f"{DS_LOGS}/summary.log",
    benchmark:
        f"{DS_BENCH}/summary.tsv"
    conda:
        "../../envs/dlpipe.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "dlpipe {params.cfg} --dataset {wildcards.dataset} summary {input.metrics} --models {params.models}"
        " {params.baselines} --bench {params.bench} --out {params.out} > {log} 2>&1"
