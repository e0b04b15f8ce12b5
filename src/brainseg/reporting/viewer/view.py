"""`brainseg view`: look at a finished run's predictions in the browser, in 3D.

A local web server (uvicorn) over the run's `reports/per_subject.csv`, predictions and raw
scans: an index of the scored subjects with their Dice, a NiiVue page per subject (the
four modalities; reference beside prediction with the BraTS label colours of the figures;
the whole-tumour error map; synchronised axial, coronal and sagittal views), and an
upload page that segments a new subject with `predict`'s code. Security limits and
options: docs/viewer.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
from pathlib import Path

from brainseg.errors import BrainsegError
from brainseg.reporting.viewer.runs import read_run, run_paths
from brainseg.runtime import add_device_arguments, resolve_device, set_threads
from brainseg.tracking import add_tracking_argument

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 200


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 takes a free port.

    Raises:
        BrainsegError: the address cannot be bound (in use, or not this machine's).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BrainsegError(f"--host {host} --port {port}: cannot listen there ({exc})") from exc
    sock.listen(64)
    return sock


def allowed_hosts(host: str) -> list[str]:
    """Host header values the server accepts: loopback names, and `host` when it is one
    name or address (`*` for a wildcard bind, whose names are not known)."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    if host in ("0.0.0.0", "::"):
        return ["*"]
    return names if is_loopback(host) else [*names, f"[{host}]" if ":" in host else host]


def run_view(*, run: Path | None = None, reports: Path | None = None,
             predictions: Path | None = None, raw: Path | None = None,
             model: str | None = None, postprocess: Path | None = None,
             host: str = "127.0.0.1", port: int = 8000,
             max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, device: str = "cpu",
             tracking_uri: str | None = None) -> None:
    """Serve the viewer until interrupted (Ctrl-C).

    Args:
        run: a repository after `evaluate` (reports/per_subject.csv, data/predictions,
            data/raw; models/model.pt and reports/postprocess.json when present).
        reports, predictions, raw: the per-subject CSV, the predictions folder and the raw
            folder, instead of (or overriding) those of `run`.
        model: the model of the upload page (a checkpoint or an MLflow model URI); default
            the run's models/model.pt; without one, uploads are refused.
        postprocess: post-processing settings for uploads (default: the run's).
        host, port: where to listen; port 0: a free port. The URL is logged.
        max_upload_mb: most megabytes of one upload (the four files together).
        device: torch device of the uploads' predictions.
        tracking_uri: MLflow tracking URI for a model URI.

    Raises:
        BrainsegError: the run cannot be read, or the address cannot be bound.
    """
    import uvicorn

    from brainseg.reporting.viewer.app import create_app
    from brainseg.reporting.viewer.uploads import Segmenter

    if max_upload_mb <= 0:
        raise BrainsegError(f"--max-upload-mb {max_upload_mb}: expected a positive number")
    paths = run_paths(run, per_subject=reports, predictions=predictions, raw=raw,
                      postprocess=postprocess)
    subjects = read_run(paths)
    model_ref = model or (str(paths.model) if paths.model else None)
    segmenter = Segmenter(model_ref, paths.postprocess, device, tracking_uri)
    if not is_loopback(host):
        log.warning("listening on %s: anyone who can reach this machine on port %s sees the "
                    "scans and can upload (use the default 127.0.0.1 unless you mean it)",
                    host, port)
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    app = create_app(subjects, segmenter, max_upload_bytes=int(max_upload_mb * 1e6),
                     allowed_hosts=allowed_hosts(host))
    shown = f"[{host}]" if ":" in host else host
    log.info("brainseg view: %d subjects at http://%s:%d/ (uploads: %s; Ctrl-C stops)",
             len(subjects), shown, bound, model_ref or "off, no --model")
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", type=Path, default=None, metavar="DIR",
        help="a repository after `brainseg evaluate`: reads reports/per_subject.csv, "
        "data/predictions/<subject>_seg.nii.gz, data/raw/<subject>/ and, when present, "
        "models/model.pt and reports/postprocess.json (e.g. --run .)")
    parser.add_argument("--reports", type=Path, default=None, metavar="CSV",
                        help="the per-subject table written by evaluate (default: "
                        "<run>/reports/per_subject.csv)")
    parser.add_argument("--predictions", type=Path, default=None, metavar="DIR",
                        help="folder of <subject>_seg.nii.gz predictions (default: "
                        "<run>/data/predictions)")
    parser.add_argument("--raw", type=Path, default=None, metavar="DIR",
                        help="raw folder with <subject>/<subject>_{t1,t1ce,t2,flair,seg}.nii.gz "
                        "(default: <run>/data/raw)")
    parser.add_argument("--model", default=None,
                        help="model of the upload page: a checkpoint (models/model.pt) or an "
                        "MLflow model URI (default: <run>/models/model.pt; without one, the "
                        "upload page refuses uploads)")
    parser.add_argument("--postprocess", type=Path, default=None, metavar="JSON",
                        help="post-processing settings of uploads' predictions (default: "
                        "<run>/reports/postprocess.json when present, else threshold 0.5)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; "
                        "any other address is warned about, as it exposes the scans)")
    parser.add_argument("--port", type=int, default=8000,
                        help="port to listen on (default 8000; 0: a free port); the URL is "
                        "printed at start")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help="most megabytes of one upload, the four files together "
                        f"(default {DEFAULT_MAX_UPLOAD_MB})")
    add_device_arguments(parser)
    add_tracking_argument(parser)


def main(args: argparse.Namespace) -> None:
    from brainseg.tracking import tracking_uri

    set_threads(args.threads)
    uri = tracking_uri(args.tracking_uri) if args.model and ":/" in args.model else None
    run_view(run=args.run, reports=args.reports, predictions=args.predictions, raw=args.raw,
             model=args.model, postprocess=args.postprocess, host=args.host, port=args.port,
             max_upload_mb=args.max_upload_mb, device=resolve_device(args.device),
             tracking_uri=uri)
