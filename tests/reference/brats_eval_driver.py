"""Run the official BraTS evaluation (brats-evaluation, config `gli`) on NIfTI pairs.

Runs only in the reference venv (`make brats-eval-install`: .venv-brats-eval), never in
the project's: it imports `brats_evaluation` and `panoptica`, and nothing of brainseg.

Usage: python brats_eval_driver.py CASES.json OUT.json
CASES.json: [{"name": ..., "pred": path, "ref": path}, ...], label maps with the BraTS
2023 values (1 NETC, 2 SNFH, 3 ET). OUT.json: {name: {region: {key: value}}} for the
regions wt, tc, et and the keys of KEYS as `evaluate_single_exam` returns them
(infinity written as the string "inf", NaN as null).
"""

from __future__ import annotations

import json
import math
import sys
import warnings

from brats_evaluation import config_path, evaluate_single_exam
from panoptica import Panoptica_Evaluator

REGIONS = ("wt", "tc", "et")
KEYS = ("tp", "fp", "fn", "num_ref_instances", "num_pred_instances",
        "sq_dsc", "sq_hd95", "sq_nsd", "global_bin_dsc", "global_bin_hd95", "global_bin_nsd")


def _plain(value):
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    return "inf" if math.isinf(value) else value


def main(cases_path: str, out_path: str) -> None:
    warnings.simplefilter("ignore")
    evaluator = Panoptica_Evaluator.load_from_config(str(config_path("gli")))
    with open(cases_path) as f:
        cases = json.load(f)
    out = {}
    for case in cases:
        result = evaluate_single_exam(case["pred"], case["ref"], case["name"], evaluator)
        if "error" in result:
            raise SystemExit(f"{case['name']}: {result['error']}")
        out[case["name"]] = {r: {k: _plain(result[r].get(k)) for k in KEYS} for r in REGIONS}
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
