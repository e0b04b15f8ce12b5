"""`brainseg init-tracking`: create the MLflow experiment once, before parallel jobs."""

from __future__ import annotations

import argparse
import logging

from brainseg.params import load_params
from brainseg.tracking import add_tracking_argument, setup_experiment, tracking_uri

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params.yaml (train.experiment is used)")
    add_tracking_argument(parser)


def main(args: argparse.Namespace) -> None:
    uri = tracking_uri(args.tracking_uri)
    name = load_params(args.params)["train"]["experiment"]
    log.info("MLflow experiment '%s' (id %s) at %s", name, setup_experiment(uri, name), uri)
