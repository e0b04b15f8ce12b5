"""The `brainseg` command: one subcommand per pipeline stage.

Each subcommand is a thin wrapper over a plain function: `brainseg <stage>` runs
`run_<stage>()` of the module `<stage>` named in `COMMANDS`, so Snakemake rules and DVC
stages call the very same code. `--params` is declared here, once, for every command
that reads params.yaml, and loaded (validated) here: the module's `main(args, params)`
gets the loaded params. Stage modules are imported only when their subcommand runs,
which keeps `brainseg download` free of torch's start-up cost.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from pathlib import Path
from typing import NamedTuple

from brainseg import __version__, runlock
from brainseg.errors import BrainsegError, Stopped, stop_on_sigterm
from brainseg.params import load_params

log = logging.getLogger("brainseg")


class Command(NamedTuple):
    """A subcommand: its module (with `configure_parser`, `main` and `run_<name>`), its
    one-line summary, and whether it reads params.yaml (`--params`)."""

    module: str
    summary: str
    params: bool = True


COMMANDS: dict[str, Command] = {
    "download": Command(
        "brainseg.data.download",
        "generate the synthetic cohort or ingest a BraTS folder into data/raw"),
    "extract": Command(
        "brainseg.data.extract", "validate raw subjects, crop to the brain, resize axial slices"),
    "normalize": Command(
        "brainseg.data.normalize",
        "z-score each modality inside the brain; write the training store"),
    "split": Command(
        "brainseg.data.split", "subject-level train/val/test split stratified by volume"),
    "train": Command("brainseg.training.train", "train the 2D U-Net and record an MLflow run"),
    "postprocess": Command(
        "brainseg.evaluation.postprocess",
        "choose thresholds, clean-up and flip TTA on the validation split"),
    "evaluate": Command(
        "brainseg.evaluation.evaluate",
        "segment test subjects in 3D, write NIfTI predictions and metrics"),
    "export": Command(
        "brainseg.evaluation.export",
        "export a trained checkpoint (or fold ensemble) as an ONNX model for ONNX Runtime",
        params=False),
    "predict": Command(
        "brainseg.evaluation.predict",
        "segment new patients (a folder, four files, or a batch) with a trained model",
        params=False),
    "figures": Command(
        "brainseg.reporting.figures",
        "learning curves, Dice box plot and overlays of best/median/worst subjects"),
    "realism": Command(
        "brainseg.reporting.realism",
        "compare the synthetic cohort with a real scan; score the model on it"),
    "anomaly": Command(
        "brainseg.reporting.anomaly",
        "optional: train a 3D autoencoder on tumour-free brain; score its reconstruction "
        "error as a tumour map (AUROC, AP, WT Dice)"),
    "cohort-stats": Command(
        "brainseg.data.cohort_stats",
        "summarize a real cohort's intensity, texture and tumour-shape statistics (the "
        "reference of realism's gap table)"),
    "compare": Command(
        "brainseg.reporting.compare",
        "two evaluations of the same subjects paired: mean difference, bootstrap CI, "
        "Wilcoxon p", params=False),
    "view": Command(
        "brainseg.reporting.viewer.view",
        "look at a run's predictions beside the references in the browser (NiiVue); "
        "segment uploads", params=False),
    "params": Command(
        "brainseg.params",
        "write a validated params file: a preset or params.yaml with KEY=VALUE changes",
        params=False),
    "init-tracking": Command(
        "brainseg.init_tracking", "create the MLflow experiment once, before jobs fan out"),
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
    for name, command in COMMANDS.items():
        summary = command.summary
        description = summary[0].upper() + summary[1:] + "."
        child = sub.add_parser(name, help=summary, description=description)
        if name == selected:
            if command.params:
                child.add_argument("--params", required=True, type=Path,
                                   help="params.yaml to read (validated against the schema)")
            importlib.import_module(command.module).configure_parser(child)
    return parser


def _selected(argv: list[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def disk_full(exc: OSError) -> bool:
    """ENOSPC or EDQUOT, or numpy's short write ("N requested and M written"), which has
    no errno."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or " requested and " in str(exc)


def os_problem(exc: OSError) -> str:
    """An OSError on one line: the file when it names one, and what happened."""
    what = exc.strerror or str(exc)
    if disk_full(exc) and exc.errno is None:
        what = f"no space left on the device (a short write: {exc})"
    return f"{exc.filename}: {what}" if exc.filename else what


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `brainseg` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    selected = _selected(argv)
    args = build_parser(selected).parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # nibabel logs the header faults it finds (then raises, or patches them: a zero voxel
    # size becomes 1) without naming the file; brainseg.io.nifti refuses each with one
    # message that does. Shown with --verbose.
    logging.getLogger("nibabel").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    command = COMMANDS[args.command]
    stop_on_sigterm()
    try:
        runlock.hold_for_dvc_stage()  # refused while Snakemake runs in this working copy
        module = importlib.import_module(command.module)
        if command.params:
            module.main(args, load_params(args.params))
        else:
            module.main(args)
    except BrainsegError as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:  # a full disk, a permission, a vanished mount
        log.debug("the error in full", exc_info=True)
        log.error("brainseg %s: %s: nothing half-written is left%s", args.command,
                  os_problem(exc), "; free some space and rerun" if disk_full(exc) else "")
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Stopped)
        from brainseg.io.atomic import remove_pending

        remove_pending()  # a write the signal caught outside its `try`
        name = "SIGTERM" if isinstance(exc, Stopped) else "SIGINT (Ctrl-C)"
        log.error("brainseg %s stopped by %s: the outputs already written are complete, "
                  "nothing half-written is left", args.command, name)
        return 143 if isinstance(exc, Stopped) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
