"""The `brainseg` command: one subcommand per pipeline stage.

Each subcommand is a thin wrapper over a plain function (`run_<stage>`), so Snakemake
rules and DVC stages call the very same code. Stage modules are imported only when
their subcommand runs, which keeps `brainseg download` free of torch's start-up cost.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from brainseg import __version__
from brainseg.errors import BrainsegError

log = logging.getLogger("brainseg")

COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("brainseg.data.download",
                 "generate the synthetic cohort or ingest a BraTS folder into data/raw"),
    "extract": ("brainseg.data.extract",
                "validate raw subjects, crop to the brain, resize axial slices"),
    "normalize": ("brainseg.data.normalize",
                  "z-score each modality inside the brain; write the training store"),
    "split": ("brainseg.data.split", "subject-level train/val/test split stratified by volume"),
    "train": ("brainseg.training.train", "train the 2D U-Net and record an MLflow run"),
    "postprocess": ("brainseg.evaluation.postprocess",
                    "choose thresholds, clean-up and flip TTA on the validation split"),
    "evaluate": ("brainseg.evaluation.evaluate",
                 "segment test subjects in 3D, write NIfTI predictions and metrics"),
    "predict": ("brainseg.evaluation.predict",
                "segment new patients (a folder, four files, or a batch) with a trained model"),
    "figures": ("brainseg.reporting.figures",
                "learning curves, Dice box plot and overlays of best/median/worst subjects"),
    "realism": ("brainseg.reporting.realism",
                "compare the synthetic cohort with a real scan; score the model on it"),
    "init-tracking": ("brainseg.init_tracking",
                      "create the MLflow experiment once, before jobs fan out"),
}


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """The argument parser; only the `selected` subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="brainseg",
        description="Reproducible BraTS glioma segmentation: each subcommand is one stage "
        "of the pipeline that Snakemake (Snakefile) and DVC (dvc.yaml) run.",
    )
    parser.add_argument("--version", action="version", version=f"brainseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        description = summary[0].upper() + summary[1:] + "."
        child = sub.add_parser(name, help=summary, description=description)
        if name == selected:
            importlib.import_module(module).configure_parser(child)
    return parser


def _selected(argv: list[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `brainseg` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    selected = _selected(argv)
    args = build_parser(selected).parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        importlib.import_module(COMMANDS[args.command][0]).main(args)
    except BrainsegError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
