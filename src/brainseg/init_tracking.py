"""Command `init-tracking`: create the MLflow experiment once, before parallel jobs."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from brainseg.tracking import add_tracking_argument, setup_experiment

log = logging.getLogger(__name__)


def run_init_tracking(*, params: dict[str, Any], tracking_uri: str) -> str:
    """Create the experiment `train.experiment` at `tracking_uri` if missing; returns its id."""
    name = params["train"]["experiment"]
    exp_id = setup_experiment(tracking_uri, name)
    log.info("MLflow experiment '%s' (id %s) at %s", name, exp_id, tracking_uri)
    return exp_id


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_tracking_argument(parser)


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from brainseg.tracking import tracking_uri

    run_init_tracking(params=params, tracking_uri=tracking_uri(args.tracking_uri))
