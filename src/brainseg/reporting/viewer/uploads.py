"""Uploads of `brainseg view`: a new subject's modality files in, its prediction out.

The body of an upload is parsed as it arrives (python-multipart's streaming parser) and
each expected field is written to a file that this module names (`<modality>.upload`)
inside the request's own temporary folder; a client's file name is never used. The
total size is counted while reading, whatever the request claims, and the body is
refused as soon as it passes the limit. Each file is then checked by content (a NIfTI
header, after gunzip when gzipped), and the prediction is made by `predict`'s own
`predict_subject`, one at a time. What the viewer keeps afterwards is in memory
(`UploadStore`); the temporary folder is removed when the request ends.
"""

from __future__ import annotations

import gzip
import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import nibabel as nib
import numpy as np
from python_multipart.multipart import MultipartParser, parse_options_header

from brainseg.data.inputs import listed_files
from brainseg.errors import BrainsegError
from brainseg.evaluation.inference import load_model, model_modalities
from brainseg.evaluation.labelmaps import PostprocessSettings, read_settings
from brainseg.evaluation.predict import Predictor, predict_subject
from brainseg.reporting.viewer.volumes import sniff_nifti

#: Uploads kept in memory for viewing and download (the oldest is dropped first).
KEEP_UPLOADS = 4


class UploadError(BrainsegError):
    """An upload refused; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _FormWriter:
    """python-multipart callbacks writing each allowed field to `<folder>/<field>.upload`."""

    def __init__(self, folder: Path, allowed: tuple[str, ...]) -> None:
        self.folder, self.allowed = folder, allowed
        self.files: dict[str, Path] = {}
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._out: BinaryIO | None = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._field,
                "on_header_value": self._value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._data,
                "on_part_end": self._part_end}

    def _part_begin(self) -> None:
        self._disposition = b""

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("latin-1")
        if name not in self.allowed:
            raise UploadError(f"unexpected form field {name[:40]!r} (expected "
                              f"{', '.join(self.allowed)})")
        if name in self.files:
            raise UploadError(f"form field {name!r} given twice")
        self.files[name] = self.folder / f"{name}.upload"
        self._out = self.files[name].open("wb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        assert self._out is not None
        self._out.write(data[start:end])

    def _part_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def receive_form(body: AsyncIterator[bytes], content_type: str, folder: Path,
                       allowed: tuple[str, ...], limit: int) -> dict[str, Path]:
    """Stream a multipart/form-data body into `folder`, one file per allowed field.

    Args:
        body: the request body, in chunks.
        content_type: the request's Content-Type header (carries the boundary).
        folder: the request's temporary folder (the only place written to).
        allowed: the field names accepted (the modalities).
        limit: most bytes of body accepted.

    Returns:
        The file written for each field received.

    Raises:
        UploadError: not multipart (415), over `limit` (413), an unknown or repeated field,
            or a malformed body (400).
    """
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError("expected a multipart/form-data upload", 415)
    writer = _FormWriter(folder, allowed)
    parser = MultipartParser(boundary, writer.callbacks())
    size = 0
    try:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise UploadError(f"upload larger than the limit of {limit / 1e6:.0f} MB "
                                  "(brainseg view --max-upload-mb)", 413)
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # python-multipart raises several types on a malformed body
        raise UploadError(f"malformed multipart body ({type(exc).__name__})") from exc
    finally:
        writer.close()
    return writer.files


def nifti_inputs(files: dict[str, Path], need: tuple[str, ...]) -> list[Path]:
    """Check each needed upload by content and give it a NIfTI name of this module's choice.

    Returns:
        `upload_<modality>.nii.gz` (or `.nii`) in the order of `need`.

    Raises:
        UploadError: a needed modality missing or empty (400), or not a NIfTI file (415).
    """
    missing = [m for m in need if m not in files or files[m].stat().st_size == 0]
    if missing:
        raise UploadError(f"missing modality file(s): {', '.join(missing)} (the model needs "
                          f"{', '.join(need)})")
    named = []
    for modality in need:
        found = sniff_nifti(files[modality])
        if found is None:
            raise UploadError(f"{modality}: not a NIfTI file (no NIfTI-1 or NIfTI-2 header, "
                              "after gunzip when gzipped)", 415)
        target = files[modality].with_name(
            f"upload_{modality}{'.nii.gz' if found[1] else '.nii'}")
        files[modality].rename(target)
        named.append(target)
    return named


@dataclass
class Segmenter:
    """The model of the viewer's uploads, loaded on first use; one prediction at a time."""

    model: str | None
    postprocess: Path | None = None
    device: str = "cpu"
    tracking_uri: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _predictor: Predictor | None = None

    def need(self) -> tuple[str, ...]:
        """The modalities the model takes (loads it).

        Raises:
            UploadError: no model (503), or it cannot be loaded.
        """
        return model_modalities(self._load().config)

    def _load(self) -> Predictor:
        if self.model is None:
            raise UploadError("no model: start `brainseg view` with --model (or a --run that "
                              "has models/model.pt)", 503)
        if self._predictor is None:
            net, config = load_model(self.model, self.device, self.tracking_uri)
            settings = (read_settings(self.postprocess) if self.postprocess is not None
                        else PostprocessSettings.uniform(0.5))
            self._predictor = Predictor(net, config, settings, device=self.device)
        return self._predictor

    def segment(self, inputs: list[Path], output: Path) -> Path:
        """`predict_subject` on `inputs` (in the model's modality order) into `output`.

        Raises:
            UploadError: another prediction is running (503).
            BrainsegError: bad input (from `predict`).
        """
        if not self.lock.acquire(blocking=False):
            raise UploadError("another prediction is running; try again when it is done", 503)
        try:
            predictor = self._load()
            subject = listed_files(inputs, "brats2020", model_modalities(predictor.config))
            return predict_subject(predictor, subject, output)
        finally:
            self.lock.release()


@dataclass(frozen=True)
class Upload:
    """A segmented upload kept in memory: gzipped NIfTI bytes of each volume."""

    volumes: dict[str, bytes]
    modalities: list[str]
    shape: tuple[int, ...]
    labels: dict[int, int]


def keep(inputs: list[Path], prediction: Path, modalities: tuple[str, ...]) -> Upload:
    """Read a finished upload's files into memory (gzipped), before its folder goes."""
    volumes = {}
    for modality, path in zip(modalities, inputs, strict=True):
        data = path.read_bytes()
        volumes[modality] = data if data[:2] == b"\x1f\x8b" else gzip.compress(data, 1, mtime=0)
    volumes["prediction"] = prediction.read_bytes()
    labels = np.asanyarray(nib.load(prediction).dataobj)
    values, counts = np.unique(labels, return_counts=True)
    return Upload(volumes, list(modalities), tuple(int(s) for s in labels.shape),
                  {int(v): int(c) for v, c in zip(values, counts, strict=True)})


@dataclass
class UploadStore:
    """The last `KEEP_UPLOADS` uploads, by a random token (the only key a client sends)."""

    uploads: OrderedDict[str, Upload] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, upload: Upload) -> str:
        token = secrets.token_hex(16)
        with self.lock:
            self.uploads[token] = upload
            while len(self.uploads) > KEEP_UPLOADS:
                self.uploads.popitem(last=False)
        return token

    def get(self, token: str) -> Upload | None:
        with self.lock:
            return self.uploads.get(token)
