"""Dice of reduced-precision ONNX variants (int8 dynamic quantization, fp16) against fp32,
out of fold, on a cross-validated real run.

Run: .venv/bin/python -m benchmarks.onnx_precision --run /tmp/rr3 [--variants int8 fp16]
     [--folds 0 1 2 3 4] [--threads 2]

`--run` is a repository where the real preset has run (`make run-real`): its
`models/model.pt` (the fold ensemble), `data/splits.csv`, `data/raw` and
`reports/postprocess.json`. Each fold model is exported alone (fp32) and converted to
each variant; each scores the subjects its fold never saw with the same preprocessing and
post-processing (`predict_probabilities`, `apply`), as `evaluate` does. Prints the mean
Dice per region of each precision, the difference to fp32 and the seconds per subject;
records nothing. A variant is worth shipping only if every region stays within 0.005 Dice.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import setup_logging
from brainseg.data.labels import REGIONS, region_mask
from brainseg.data.loading import load_subject
from brainseg.data.split import held_out
from brainseg.evaluation.export import example_input, model_metadata
from brainseg.evaluation.inference import load_checkpoint, model_inputs, predict_probabilities
from brainseg.evaluation.labelmaps import apply, read_settings
from brainseg.evaluation.metrics import dice
from brainseg.evaluation.onnx_graph import export_graph
from brainseg.evaluation.onnx_runtime import open_session

log = logging.getLogger("onnx_precision")


def variant_file(fp32: Path, variant: str) -> Path:
    """Convert the fp32 model file to `variant` (int8: dynamic quantization of the weights,
    activations quantized at run time; fp16: weights and compute in fp16, fp32 at the
    input and output)."""
    out = fp32.with_name(f"{fp32.stem}_{variant}.onnx")
    if variant == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QUInt8)
    elif variant == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(fp32), keep_io_types=True), out)
    else:
        raise SystemExit(f"unknown variant {variant} (int8 | fp16)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a repository after run-real")
    parser.add_argument("--variants", nargs="+", default=["int8"], help="int8 and/or fp16")
    parser.add_argument("--folds", nargs="+", type=int, default=None, help="default: all")
    parser.add_argument("--threads", type=int, default=0, help="threads (0: the default)")
    args = parser.parse_args()
    setup_logging()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ensemble, config = load_checkpoint(args.run / "models" / "model.pt")
    single = {k: v for k, v in config.items() if k != "ensemble"}
    splits = pd.read_csv(args.run / "data" / "splits.csv")
    settings = read_settings(args.run / "reports" / "postprocess.json")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fold in args.folds if args.folds is not None else range(len(ensemble.members)):
            member = ensemble.members[fold].to(memory_format=torch.contiguous_format)
            fp32 = Path(tmp) / f"fold{fold}.onnx"
            fp32.write_bytes(export_graph(member, example_input(single),
                                          model_metadata(single, args.run / "models/model.pt")))
            files = {"fp32": fp32} | {v: variant_file(fp32, v) for v in args.variants}
            nets = {k: open_session(p, torch.get_num_threads()) for k, p in files.items()}
            for subject in held_out(splits, fold):
                loaded = load_subject(args.run / "data" / "raw" / subject, native=True)
                image = model_inputs(single, loaded.image, loaded.modalities, subject)
                for precision, net in nets.items():
                    start = time.perf_counter()
                    probs = predict_probabilities(net, single, image, 32,
                                                  flip_tta=settings.flip_tta)
                    labels = apply(probs, settings, loaded.spacing)
                    row = {"fold": fold, "subject": subject, "precision": precision,
                           "seconds": time.perf_counter() - start}
                    row |= {r: dice(region_mask(labels, r), region_mask(loaded.seg, r))
                            for r in REGIONS}
                    rows.append(row)
                    log.info("%s", row)
    table = pd.DataFrame(rows)
    means = table.groupby("precision")[[*REGIONS, "seconds"]].mean()
    log.info("mean Dice and s/subject over %d subjects:\n%s", table["subject"].nunique(),
             means.to_string(float_format=lambda v: f"{v:.4f}"))
    for variant in args.variants:
        diff = means.loc[variant, list(REGIONS)] - means.loc["fp32", list(REGIONS)]
        worst = float(np.abs(diff).max())
        log.info("%s - fp32: %s; largest |difference| %.4f: %s", variant,
                 {r: round(float(d), 4) for r, d in diff.items()}, worst,
                 "within 0.005" if worst <= 0.005 else "NOT within 0.005")


if __name__ == "__main__":
    main()
