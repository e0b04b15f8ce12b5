# brainseg: NIfTI -> slices -> 2D U-Net -> 3D metrics -> figures.
# The same `brainseg <stage>` commands run under DVC (dvc.yaml); params.yaml feeds both.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from brainseg.errors import BrainsegError
from brainseg.params import validate_params

min_version("9.0")


configfile: "params.yaml"


# The validation every brainseg command applies (workflow/schemas/params.schema.yaml, read
# with libyaml, plus the combinations a schema cannot express): a missing key is an error,
# not filled from the schema, and the message names the first offending key.
try:
    validate_params(config, "params (params.yaml or --configfile)")
except BrainsegError as exc:
    raise WorkflowError(str(exc)) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/anomaly.smk"


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
        anomaly=ANOMALY,
