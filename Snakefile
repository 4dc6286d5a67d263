# dlpipe workflow. This file only validates the config and includes the rules;
# each rule lives in workflow/rules/ and calls one `dlpipe` subcommand, per dataset of the
# config (workflow/rules/datasets.smk), under <results>/<dataset>/.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/tile.smk"
include: "workflow/rules/cvat.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/suggest.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/instances.smk"
include: "workflow/rules/summary.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        INSTANCE_TARGETS,
