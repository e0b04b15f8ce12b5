"""`brainseg view` over HTTP: a real uvicorn server on 127.0.0.1 on a tiny run in tmp_path."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import nibabel as nib
import numpy as np
import pytest

from brainseg.data.modalities import MODALITIES
from brainseg.reporting.viewer.app import VOLUMES, create_app
from brainseg.reporting.viewer.runs import read_run, run_paths
from brainseg.reporting.viewer.uploads import Segmenter
from brainseg.reporting.viewer.view import allowed_hosts, is_loopback
from brainseg.reporting.viewer.volumes import error_map, nifti_header_kind
from tests.conftest import REAL_CASE
from tests.evaluation.test_inference import save_checkpoint
from tests.reporting.viewer_run import SUBJECTS, serving, write_run


def request(base: str, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes, dict]:
    """One request with `path` sent exactly as given (no client-side normalisation)."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read(), {k.lower(): v for k, v in reply.getheaders()}
    finally:
        conn.close()


def post_until_answered(base: str, headers: dict[str, str],
                        chunks: list[bytes]) -> tuple[int, bytes]:
    """POST `chunks` over a raw socket, stopping as soon as the server answers (a refusal
    before the body ends); returns the status and the response bytes."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /api/upload HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0.01)[0]:
                break
            with contextlib.suppress(OSError):
                sock.sendall(chunk)
        reply = b""
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                reply += data
                if b"\r\n\r\n" in reply and b"}" in reply:
                    break
    return int(reply.split(b" ", 2)[1]), reply


def multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body with one file per field, named like a client would."""
    boundary = "brainsegtestboundary7d1f"
    parts = []
    for name, data in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="../../{name}.nii.gz"\r\nContent-Type: application/gzip\r\n\r\n'
                     .encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def nifti(data: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(data))


@pytest.fixture
def tiny_run(tmp_path):
    return write_run(tmp_path / "run")


@pytest.fixture
def site(tiny_run):
    with serving(create_app(read_run(run_paths(tiny_run)), Segmenter(None))) as base:
        yield base


def test_index_lists_the_subjects_with_their_dice(site):
    status, body, headers = request(site, "GET", "/")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    for sid in SUBJECTS:
        assert f'href="/subjects/{sid}"' in page
    assert "0.912" in page and "0.801" in page and "n/a" in page  # TINY-001 has no ET
    assert "content-security-policy" in headers and "https://" not in page
    status, body, _ = request(site, "GET", "/api/subjects")
    listed = json.loads(body)
    assert [s["subject"] for s in listed] == list(SUBJECTS)
    assert listed[1]["dice"] == {"WT": 0.5, "TC": 0.25, "ET": None, "mean": 0.375}
    assert listed[0]["volumes"] == list(VOLUMES)


def test_every_volume_of_a_known_subject_is_served_as_nifti(site, tiny_run):
    raw = tiny_run / "data" / "raw" / "TINY-001"
    for volume in VOLUMES:
        status, body, headers = request(site, "GET", f"/api/subjects/TINY-001/{volume}.nii.gz")
        assert status == 200 and headers["content-type"] == "application/gzip", volume
        assert headers["x-content-type-options"] == "nosniff"
        assert nifti(body).shape == (32, 32, 12)
    _, body, _ = request(site, "GET", "/api/subjects/TINY-001/flair.nii.gz")
    assert body == (raw / "TINY-001_flair.nii.gz").read_bytes()
    _, body, _ = request(site, "GET", "/api/subjects/TINY-001/errors.nii.gz")
    errors = nifti(body)
    ref = np.asarray(nib.load(raw / "TINY-001_seg.nii.gz").dataobj)
    pred = np.roll(ref, 2, axis=0)
    np.testing.assert_array_equal(np.asarray(errors.dataobj), error_map(ref, pred))
    assert set(np.unique(np.asarray(errors.dataobj)).tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(errors.affine, nib.load(raw / "TINY-001_seg.nii.gz").affine)
    status, body, _ = request(site, "GET", "/subjects/TINY-001")
    assert status == 200 and b'"base": "/api/subjects/TINY-001"' in body


@pytest.mark.parametrize("path", [
    "/api/subjects/NOPE/flair.nii.gz",
    "/api/subjects/TINY-001/seg.nii.gz",
    "/api/subjects/TINY-001/flair",
    "/api/subjects/TINY-001/TINY-001_flair.nii.gz",
    "/api/subjects/../raw/TINY-001/flair.nii.gz",
    "/api/subjects/..%2F..%2Fdata%2Fraw%2FTINY-001/flair.nii.gz",
    "/api/subjects/%2E%2E/flair.nii.gz",
    "/api/subjects/TINY-001/..%2FTINY-001_seg.nii.gz",
    "/api/subjects/TINY-001/%2e%2e%2f%2e%2e%2freports%2fper_subject.csv",
    "/api/subjects/%2Fetc%2Fpasswd/flair.nii.gz",
    "/subjects/..%2F..%2Fetc%2Fpasswd",
    "/subjects/NOPE",
    "/static/..%2F..%2Fruns.py",
    "/static/../app.py",
    "/api/uploads/0123456789abcdef/prediction.nii.gz",
    "/api/uploads/..%2F..%2F/download",
    "/uploads/0123456789abcdef",
])
def test_unknown_ids_and_path_traversal_are_404(site, path):
    status, body, _ = request(site, "GET", path)
    assert status == 404, (path, status)
    assert not body.startswith(b"\x1f\x8b") and b"TINY-001," not in body


def test_a_foreign_host_header_is_refused(site):
    status, _, _ = request(site, "GET", "/", headers={"Host": "attacker.example"})
    assert status == 400
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_hosts("0.0.0.0") == ["*"] and is_loopback("::1") and not is_loopback("10.0.0.1")


@pytest.fixture
def upload_site(tiny_run, tmp_path, monkeypatch):
    """The viewer with a model (random weights, image size 64) and a small upload limit
    (25 MB); temporary folders go to tmp_path/tmp, so the test sees what is left."""
    save_checkpoint(tmp_path / "m.pt", image_size=64)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    segmenter = Segmenter(str(tmp_path / "m.pt"))
    app = create_app(read_run(run_paths(tiny_run)), segmenter, max_upload_bytes=25_000_000)
    with serving(app) as base:
        yield base, segmenter, tmp_path / "tmp"


def real_files() -> dict[str, bytes]:
    return {m: (REAL_CASE / f"{REAL_CASE.name}_{m}.nii.gz").read_bytes() for m in MODALITIES}


def test_upload_of_the_real_case_returns_its_label_map(upload_site):
    base, _, tmp = upload_site
    body, kind = multipart(real_files())
    status, reply, _ = request(base, "POST", "/api/upload", body, {"Content-Type": kind})
    assert status == 200, reply
    result = json.loads(reply)
    assert result["shape"] == [240, 240, 155] and set(result["labels"]) <= {"0", "1", "2", "4"}
    status, data, headers = request(base, "GET", result["download"])
    assert status == 200 and "attachment" in headers["content-disposition"]
    labels = nifti(data)
    flair = nib.load(REAL_CASE / f"{REAL_CASE.name}_flair.nii.gz")
    assert labels.shape == flair.shape and labels.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(labels.affine, flair.affine)
    status, page, _ = request(base, "GET", result["page"])
    assert status == 200 and result["download"].encode() in page
    status, data, _ = request(base, "GET", f"{result['base']}/flair.nii.gz")
    assert status == 200 and nifti(data).shape == (240, 240, 155)
    assert list(tmp.iterdir()) == []  # the request's folder is gone


def test_upload_over_the_limit_is_refused(upload_site):
    base, _, tmp = upload_site
    files = {m: b"\x1f\x8b" + bytes(7_000_000) for m in MODALITIES}  # 28 MB in all
    body, kind = multipart(files)
    pieces = [body[i:i + 1_000_000] for i in range(0, len(body), 1_000_000)]
    # refused on its declared length, before its body is read
    status, reply = post_until_answered(
        base, {"Content-Type": kind, "Content-Length": str(len(body))}, pieces)
    assert status == 413 and b"limit of 25 MB" in reply
    # a body that does not say its length is counted as it arrives
    chunked = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    status, reply = post_until_answered(
        base, {"Content-Type": kind, "Transfer-Encoding": "chunked"}, chunked)
    assert status == 413 and b"limit of 25 MB" in reply
    assert list(tmp.iterdir()) == []


def test_upload_of_non_nifti_files_is_refused_by_content(upload_site):
    base, _, tmp = upload_site
    files = real_files()
    files["t2"] = gzip.compress(b"not a NIfTI header at all" * 40)  # a .nii.gz by its name
    body, kind = multipart(files)
    status, reply, _ = request(base, "POST", "/api/upload", body, {"Content-Type": kind})
    assert status == 415 and b"t2: not a NIfTI file" in reply
    files["t2"] = b"<html>" * 100
    body, kind = multipart(files)
    status, _, _ = request(base, "POST", "/api/upload", body, {"Content-Type": kind})
    assert status == 415
    body, kind = multipart({**real_files(), "../evil": b"x"})
    status, reply, _ = request(base, "POST", "/api/upload", body, {"Content-Type": kind})
    assert status == 400 and b"unexpected form field" in reply
    status, _, _ = request(base, "POST", "/api/upload", b"t1=x",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    assert list(tmp.iterdir()) == []


def test_one_prediction_at_a_time(upload_site):
    base, segmenter, _ = upload_site
    body, kind = multipart(real_files())
    with segmenter.lock:  # a prediction in progress
        status, reply, _ = request(base, "POST", "/api/upload", body, {"Content-Type": kind})
    assert status == 503 and b"another prediction is running" in reply


def test_nifti_header_kinds():
    header = nib.Nifti1Header()
    assert nifti_header_kind(header.binaryblock) == "nifti1"
    assert nifti_header_kind(nib.Nifti2Header().binaryblock) == "nifti2"
    assert nifti_header_kind(b"\0" * 544) is None


def test_the_command_prints_its_url_and_serves(tiny_run):
    proc = subprocess.Popen([sys.executable, "-m", "brainseg", "view", "--run", str(tiny_run),
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        deadline, url = time.monotonic() + 120, None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "brainseg view exited"
            if "http://127.0.0.1:" in line:
                url = line.split("at ", 1)[1].split("/ ", 1)[0]
        assert url, "no URL printed"
        status, body, _ = request(url, "GET", "/")
        assert status == 200 and b"TINY-002" in body
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_run_without_its_table_fails_naming_it(tmp_path):
    result = subprocess.run([sys.executable, "-m", "brainseg", "view", "--run", str(tmp_path),
                             "--port", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "per_subject.csv: per-subject table not found" in \
        result.stderr and "Traceback" not in result.stderr
