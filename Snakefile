# brainseg: NIfTI -> slices -> 2D U-Net -> 3D metrics -> figures.
# The same `brainseg <stage>` commands run under DVC (dvc.yaml); params.yaml feeds both.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


# set_default=False: a missing key is an error here too, not filled from the schema.
validate(config, "workflow/schemas/params.schema.yaml", set_default=False)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/report.smk"


onstart:
    hold_runner_lock()
    shell(f"brainseg -q init-tracking --params {PARAMS}")


rule all:
    default_target: True
    input:
        metrics="reports/metrics.json",
        onnx="models/model.onnx",
        figures=FIGURES,
        realism=REALISM,
