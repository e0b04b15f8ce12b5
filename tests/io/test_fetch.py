"""fetch() against a real HTTP server on 127.0.0.1 (`server`, tests/conftest.py), and
extract_archive() on crafted archives."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from brainseg.errors import BrainsegError
from brainseg.io.archives import extract_archive
from brainseg.io.fetch import fetch

FAST = {"backoff": 0.01, "timeout": 5.0}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def payload() -> bytes:
    return np.random.default_rng(0).bytes(300_000)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_clean_download_then_cache(server, payload, tmp_path):
    base, state = server
    state.files["/data/BraTS.bin"] = payload
    out = fetch(f"{base}/data/BraTS.bin", tmp_path, sha(payload), **FAST)
    assert out == tmp_path / "BraTS.bin"
    assert out.read_bytes() == payload
    assert len(state.requests) == 1
    assert fetch(f"{base}/data/BraTS.bin", tmp_path, sha(payload), **FAST) == out
    assert len(state.requests) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BraTS.bin"]


def test_cut_download_resumes_with_range(server, payload, tmp_path):
    base, state = server
    state.files["/x.bin"] = payload
    state.mode = "cut"
    out = fetch(f"{base}/x.bin", tmp_path, sha(payload), retries=2, **FAST)
    assert out.read_bytes() == payload
    assert state.requests[0] == ("/x.bin", None)
    assert state.requests[1] == ("/x.bin", f"bytes={len(payload) // 2}-")
    assert len(state.requests) == 2
    assert not (tmp_path / "x.bin.part").exists()


def test_server_ignoring_range_restarts(server, payload, tmp_path):
    base, state = server
    state.files["/x.bin"] = payload
    (tmp_path / "x.bin.part").write_bytes(b"junk that must be overwritten")
    state.mode = "ignore-range"
    assert fetch(f"{base}/x.bin", tmp_path, sha(payload), **FAST).read_bytes() == payload


def test_complete_part_gets_416_and_is_verified(server, payload, tmp_path):
    base, state = server
    state.files["/x.bin"] = payload
    (tmp_path / "x.bin.part").write_bytes(payload)
    assert fetch(f"{base}/x.bin", tmp_path, sha(payload), **FAST).read_bytes() == payload
    assert state.requests == [("/x.bin", f"bytes={len(payload)}-")]


def test_wrong_checksum_leaves_nothing(server, payload, tmp_path):
    base, state = server
    state.files["/x.bin"] = payload
    with pytest.raises(BrainsegError, match="sha256 mismatch") as info:
        fetch(f"{base}/x.bin", tmp_path, "0" * 64, **FAST)
    assert f"{base}/x.bin" in str(info.value) and sha(payload) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_leaves_nothing_and_a_cached_file_of_another_size_is_fetched_again(
        server, payload, tmp_path):
    base, state = server
    state.files["/x.bin"] = payload
    with pytest.raises(BrainsegError, match=f"size mismatch: expected 7 bytes, got {len(payload)}"):
        fetch(f"{base}/x.bin", tmp_path, sha(payload), size=7, **FAST)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "x.bin").write_bytes(payload[:-1])
    out = fetch(f"{base}/x.bin", tmp_path, sha(payload), size=len(payload), **FAST)
    assert out.read_bytes() == payload and len(state.requests) == 2


def test_name_sets_the_cache_file_name(server, payload, tmp_path):
    base, state = server
    state.files["/a/b/x.bin"] = payload
    out = fetch(f"{base}/a/b/x.bin", tmp_path, sha(payload), name="S1_t1.bin", **FAST)
    assert out == tmp_path / "S1_t1.bin" and out.read_bytes() == payload
    for bad in ("a/b", "..", ""):
        with pytest.raises(BrainsegError, match="is not a plain file name"):
            fetch(f"{base}/a/b/x.bin", tmp_path, sha(payload), name=bad, **FAST)


def test_bad_cached_file_is_downloaded_again(server, payload, tmp_path):
    base, state = server
    state.files["/x.bin"] = payload
    (tmp_path / "x.bin").write_bytes(b"corrupt")
    assert fetch(f"{base}/x.bin", tmp_path, sha(payload), **FAST).read_bytes() == payload
    assert len(state.requests) == 1


def test_404_fails_at_once(server, tmp_path):
    base, state = server
    state.mode = "404"
    with pytest.raises(BrainsegError, match="HTTP 404 Not Found") as info:
        fetch(f"{base}/missing.tar.gz", tmp_path, retries=3, **FAST)
    assert f"{base}/missing.tar.gz" in str(info.value)
    assert len(state.requests) == 1


def test_hanging_server_fails_in_bounded_time(server, tmp_path):
    base, state = server
    state.mode = "hang"
    start = time.monotonic()
    with pytest.raises(BrainsegError, match=r"no answer within 0\.5 s"):
        fetch(f"{base}/x.bin", tmp_path, timeout=0.5, retries=1, backoff=0.01)
    assert time.monotonic() - start <= 10
    assert len(state.requests) == 2


def test_500_once_then_ok(server, payload, tmp_path, caplog):
    base, state = server
    state.files["/x.bin"] = payload
    state.mode = "500-once"
    with caplog.at_level(logging.WARNING, logger="brainseg.io.fetch"):
        out = fetch(f"{base}/x.bin", tmp_path, sha(payload), retries=2, **FAST)
    assert out.read_bytes() == payload
    assert len(state.requests) == 2
    assert "HTTP 500" in caplog.text


def test_500_forever_gives_up(server, tmp_path):
    base, state = server
    state.mode = "500-always"
    with pytest.raises(BrainsegError, match=r"HTTP 500 .*gave up after 2 retries"):
        fetch(f"{base}/x.bin", tmp_path, retries=2, **FAST)
    assert len(state.requests) == 3
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_retried_then_fails(tmp_path):
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]
    with pytest.raises(BrainsegError, match="gave up after 2 retries"):
        fetch(f"http://127.0.0.1:{port}/x.bin", tmp_path, retries=2, **FAST)


def test_no_checksum_logs_sha256(server, payload, tmp_path, caplog):
    base, state = server
    state.files["/x.bin"] = payload
    with caplog.at_level(logging.WARNING, logger="brainseg.io.fetch"):
        out = fetch(f"{base}/x.bin", tmp_path, **FAST)
    assert out.read_bytes() == payload
    assert sha(payload) in caplog.text and "download.sha256" in caplog.text


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "/local/path"])
def test_non_http_schemes_refused(url, tmp_path):
    with pytest.raises(BrainsegError, match="not an http"):
        fetch(url, tmp_path)


def test_url_without_file_name_uses_fallback(server, payload, tmp_path):
    base, state = server
    state.files["/"] = payload
    assert fetch(f"{base}/", tmp_path, sha(payload), **FAST) == tmp_path / "download"


# ---------------------------------------------------------------- extract_archive


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes = b"x", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tf.addfile(info, io.BytesIO(data) if info.isfile() else None)


def make_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w:gz",
             links: list[tuple[str, str, bytes]] = ()) -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members:
            add_bytes(tf, name, data)
        for name, target, kind in links:
            add_bytes(tf, name, b"", type=kind, linkname=target)
    return path


def make_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


GOOD = [("BraTS/S-001/a.nii.gz", b"alpha"), ("BraTS/S-001/b.txt", b"beta"),
        ("BraTS/top.csv", b"id\n1\n"), ("__MACOSX/BraTS/._top.csv", b"junk"),
        ("BraTS/._top.csv", b"junk")]


def check_good(dest: Path) -> None:
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["BraTS/S-001/a.nii.gz", "BraTS/S-001/b.txt", "BraTS/top.csv"]
    assert (dest / "BraTS/S-001/a.nii.gz").read_bytes() == b"alpha"
    assert not (dest / "__MACOSX").exists()


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_extract_good_tar(tmp_path, mode):
    archive = make_tar(tmp_path / "data.bin", GOOD, mode)  # the name says nothing
    dest = tmp_path / "out"
    assert extract_archive(archive, dest) == dest
    check_good(dest)


def test_extract_good_zip_replaces_dest(tmp_path):
    archive = make_zip(tmp_path / "data.tar.gz", [("BraTS/", b""), *GOOD])
    dest = tmp_path / "out"
    (dest / "stale").mkdir(parents=True)
    assert extract_archive(archive, dest) == dest
    check_good(dest)
    assert not (dest / "stale").exists()


def test_extract_tar_with_internal_symlink(tmp_path):
    archive = make_tar(tmp_path / "a.tgz", [("d/f.txt", b"f")],
                       links=[("d/link", "f.txt", tarfile.SYMTYPE)])
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out/d/link").read_bytes() == b"f"


@pytest.mark.parametrize(("members", "links", "match"), [
    ([("ok.txt", b"1"), ("../evil", b"pwned")], [], "escapes"),
    ([("ok.txt", b"1"), ("a/../../evil", b"pwned")], [], "escapes"),
    ([("ok.txt", b"1"), ("{tmp}/abs_evil", b"pwned")], [], "absolute"),
    ([("ok.txt", b"1")], [("ln", "../evil", tarfile.SYMTYPE)], "outside"),
    ([("ok.txt", b"1")], [("ln", "/etc/passwd", tarfile.SYMTYPE)], "outside"),
    ([("ok.txt", b"1")], [("hl", "../evil", tarfile.LNKTYPE)], "outside"),
    ([("ok.txt", b"1")], [("d/ln", ".", tarfile.SYMTYPE), ("d/ln/x", "", tarfile.DIRTYPE)],
     "through a link"),
    ([("ok.txt", b"1")], [("fifo", "", tarfile.FIFOTYPE)], "device or fifo"),
    ([("ok.txt", b"1")], [("dev", "", tarfile.CHRTYPE)], "device or fifo"),
])
def test_unsafe_tar_refused(tmp_path, members, links, match):
    members = [(name.format(tmp=tmp_path), data) for name, data in members]
    archive = make_tar(tmp_path / "bad.tar.gz", members, links=links)
    dest = tmp_path / "work" / "out"
    with pytest.raises(BrainsegError, match=match) as info:
        extract_archive(archive, dest)
    assert str(archive) in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / "work").exists()
    assert not (tmp_path / "evil").exists() and not (tmp_path / "abs_evil").exists()


@pytest.mark.parametrize("name", ["../evil", "/abs_evil", "a/../../evil", "..\\evil"])
def test_unsafe_zip_refused(tmp_path, name):
    archive = make_zip(tmp_path / "bad.zip", [("ok.txt", b"1"), (name, b"pwned")])
    dest = tmp_path / "work" / "out"
    with pytest.raises(BrainsegError, match=r"escapes|absolute") as info:
        extract_archive(archive, dest)
    assert str(archive) in str(info.value) and "evil" in str(info.value)
    assert not (tmp_path / "work").exists() and not (tmp_path / "evil").exists()


def test_not_an_archive(tmp_path):
    junk = tmp_path / "notes.tar.gz"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(BrainsegError, match="not a tar or zip archive") as info:
        extract_archive(junk, tmp_path / "out")
    assert str(junk) in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("maker", [make_tar, make_zip])
def test_archive_over_max_bytes_refused(tmp_path, maker):
    archive = maker(tmp_path / "big.arc", [("a.bin", bytes(600)), ("b.bin", bytes(600))])
    with pytest.raises(BrainsegError, match="exceeds 1000 bytes"):
        extract_archive(archive, tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out").exists()
    extract_archive(archive, tmp_path / "out", max_bytes=1200)
    assert (tmp_path / "out/b.bin").stat().st_size == 600


def test_zip_lying_about_size_is_stopped(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", [("a.bin", bytes(5000))])
    data = bytearray(archive.read_bytes())
    # Rewrite the declared uncompressed size (central directory) from 5000 to 10.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(BrainsegError, match=r"beyond 1000 bytes|corrupt"):
        extract_archive(archive, tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out").exists()


def test_fetch_then_extract_real_targz(server, tmp_path):
    base, state = server
    archive = make_tar(tmp_path / "src.tar.gz", GOOD)
    state.files["/BraTS2020.tar.gz"] = archive.read_bytes()
    got = fetch(f"{base}/BraTS2020.tar.gz", tmp_path / "cache", sha(archive.read_bytes()),
                **FAST)
    check_good(extract_archive(got, tmp_path / "raw"))


def test_md5_is_checked_when_no_sha256_and_the_sha256_is_logged(server, payload, tmp_path,
                                                               caplog):
    """Some datasets (the Decathlon's) publish only an MD5."""
    base, state = server
    state.files["/Task01.tar"] = payload
    good = hashlib.md5(payload).hexdigest()
    with caplog.at_level(logging.WARNING):
        out = fetch(f"{base}/Task01.tar", tmp_path / "ok", md5=good, **FAST)
    assert out.read_bytes() == payload
    assert sha(payload) in caplog.text
    with pytest.raises(BrainsegError, match="md5 mismatch"):
        fetch(f"{base}/Task01.tar", tmp_path / "bad", md5="0" * 32, **FAST)
    assert list((tmp_path / "bad").iterdir()) == []
