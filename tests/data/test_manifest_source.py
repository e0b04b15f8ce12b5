"""`download.source: manifest`: listed files fetched from a loopback server, checked, ingested."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml

from brainseg.cli import main
from brainseg.data.manifest_source import (
    DEFAULT_MANIFEST_URL,
    KEYS,
    base_url,
    read_listing,
    staging_dir,
)
from brainseg.data.subjects import subject_ids
from brainseg.errors import BrainsegError
from tests.conftest import REPO, write_subject

BRATS18 = REPO.parent / "shared" / "fixtures" / "brats18"
COMMITTED = REPO / "workflow" / "manifests" / "brats18.tsv"
HEADER = "subject\tmodality\tpath\tbytes\tsha256\n"
needs_brats18 = pytest.mark.skipif(not (BRATS18 / "MANIFEST.tsv").is_file(),
                                   reason=f"real BraTS 2018 fixture not found at {BRATS18}")


def write_listing(path: Path, rows: list[tuple[str, str, str, int, str]]) -> Path:
    path.write_text("# a test manifest\n" + HEADER
                    + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def rows_for(folder: Path, prefix: str) -> list[tuple[str, str, str, int, str]]:
    """Manifest rows for the BraTS 2020 subject folders under `folder`, paths `prefix/...`."""
    rows = []
    for subject_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for key in KEYS:
            data = (subject_dir / f"{subject_dir.name}_{key}.nii.gz").read_bytes()
            rows.append((subject_dir.name, key,
                         f"{prefix}/{subject_dir.name}/{subject_dir.name}_{key}.nii.gz",
                         len(data), hashlib.sha256(data).hexdigest()))
    return rows


def serve(state, folder: Path, prefix: str, subjects: list[str] | None = None) -> None:
    """Put the files of `folder` on the loopback server under `/<prefix>/<subject>/<file>`."""
    for subject_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if subjects is None or subject_dir.name in subjects:
            for f in subject_dir.iterdir():
                state.files[f"/{prefix}/{subject_dir.name}/{f.name}"] = f.read_bytes()


def params_file(tmp_path: Path, params: dict, listing: Path, url: str | None) -> Path:
    params["download"].update(source="manifest", manifest=str(listing), url=url)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def download(params: Path, tmp_path: Path, *extra: str) -> int:
    return main(["download", "--params", str(params), "--out-dir", str(tmp_path / "raw"),
                 "--source-dir", str(tmp_path / "source"), "--jobs", "1", *extra])


@pytest.fixture
def tiny_listing(tmp_path):
    """Three tiny subjects, their manifest, and the folder they are served from."""
    www = tmp_path / "www"
    for i in range(3):
        write_subject(www, f"LIST-{i:03d}", shape=(24, 24, 10), seed=i)
    return www, write_listing(tmp_path / "list.tsv", rows_for(www, "data/v1"))


def test_the_committed_manifest_lists_twenty_subjects_and_its_source():
    listing = read_listing(COMMITTED)
    assert len(listing) == 20 and all(set(files) == set(KEYS) for files in listing.values())
    first = listing["Brats18_2013_11_1"]["t1"]
    assert first.path == "sample_volume/brats/Brats18_2013_11_1/Brats18_2013_11_1_t1.nii.gz"
    text = COMMITTED.read_text() + (COMMITTED.parent / "README.md").read_text()
    assert "5d4f3810f1c776050b6937b6db5b7afa17527efd" in text and "Menze" in text
    assert DEFAULT_MANIFEST_URL in (REPO / "params.yaml").read_text()
    assert base_url({"url": None}) == DEFAULT_MANIFEST_URL
    assert base_url({"url": "http://h/x"}) == "http://h/x/"


@needs_brats18
def test_the_committed_manifest_matches_the_fixture_checksums():
    with (BRATS18 / "MANIFEST.tsv").open() as fh:
        fixture = {(r["subject"], r["source_path"], int(r["bytes"]), r["sha256"])
                   for r in csv.DictReader(fh, delimiter="\t")}
    listed = {(f.subject, f.path, f.size, f.sha256)
              for files in read_listing(COMMITTED).values() for f in files.values()}
    assert listed == fixture


@pytest.mark.parametrize(("line", "match"), [
    ("S1\tt1\tx/S1_t1.nii.gz\t10\t" + "a" * 63, "sha256 'a{63}' is not 64"),
    ("S1\tt3\tx/S1_t3.nii.gz\t10\t" + "a" * 64, "modality 't3' is not one of"),
    ("S1\tt1\t../S1_t1.nii.gz\t10\t" + "a" * 64, r"path .* is not a relative path"),
    ("S1\tt1\t/abs/S1_t1.nii.gz\t10\t" + "a" * 64, r"path .* is not a relative path"),
    ("S1\tt1\tx/S1_t1.mha\t10\t" + "a" * 64, r"path .* is not a .nii or .nii.gz file"),
    ("S1\tt1\tx/S1_t1.nii.gz\t-3\t" + "a" * 64, "bytes '-3' is not"),
    ("S 1\tt1\tx/S1_t1.nii.gz\t10\t" + "a" * 64, "subject 'S 1' is not"),
    ("S1\tt1\tx/S1_t1.nii.gz\t10", "expected 5 tab-separated columns, got 4"),
])
def test_bad_manifest_lines_name_the_line(tmp_path, line, match):
    path = tmp_path / "bad.tsv"
    path.write_text(HEADER + line + "\n")
    with pytest.raises(BrainsegError, match=f"{path}:2: {match}"):
        read_listing(path)


def test_incomplete_or_duplicate_subjects_are_refused(tmp_path):
    row = ("S1", "t1", "x/S1_t1.nii.gz", 10, "a" * 64)
    with pytest.raises(BrainsegError, match="subject S1 lacks t1ce, t2, flair, seg"):
        read_listing(write_listing(tmp_path / "a.tsv", [row]))
    with pytest.raises(BrainsegError, match=r"a.tsv:4: S1 t1 listed twice"):
        read_listing(write_listing(tmp_path / "a.tsv", [row, row]))
    (tmp_path / "b.tsv").write_text("subject\tpath\n")
    with pytest.raises(BrainsegError, match="header must be subject modality path"):
        read_listing(tmp_path / "b.tsv")
    with pytest.raises(BrainsegError, match=r"download\.manifest: file not found"):
        read_listing(tmp_path / "none.tsv")


def test_tiny_manifest_downloads_checks_and_ingests(server, tiny_listing, tmp_path, params):
    base, state = server
    www, listing = tiny_listing
    serve(state, www, "data/v1")
    path = params_file(tmp_path, params, listing, f"{base}/")
    assert subject_ids(yaml.safe_load(path.read_text())["download"]) == [
        "LIST-000", "LIST-001", "LIST-002"]
    assert download(path, tmp_path, "--subject", "LIST-001") == 0
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["LIST-001"]
    assert download(path, tmp_path) == 0
    raw = tmp_path / "raw"
    for i in range(3):
        s = f"LIST-{i:03d}"
        for key in KEYS:
            got = (raw / s / f"{s}_{key}.nii.gz").read_bytes()
            assert got == (www / s / f"{s}_{key}.nii.gz").read_bytes()
    manifest = pd.read_csv(raw / "manifest.csv")
    assert manifest["subject"].tolist() == ["LIST-000", "LIST-001", "LIST-002"]
    assert set(manifest["source"]) == {"manifest"} and manifest["wt_voxels"].gt(0).all()
    assert len(state.requests) == 15  # LIST-001 fetched once, then taken from the cache
    assert {p for p, _ in state.requests} == set(state.files)


@needs_brats18
def test_real_subjects_resume_a_cut_transfer_and_land_in_the_raw_layout(server, tmp_path,
                                                                        params):
    base, state = server
    subjects = ["Brats18_2013_11_1", "Brats18_CBICA_ABM_1"]
    serve(state, BRATS18, "sample_volume/brats", subjects)
    rows = [(f.subject, f.modality, f.path, f.size, f.sha256)
            for s, files in read_listing(COMMITTED).items() if s in subjects
            for f in files.values()]
    path = params_file(tmp_path, params, write_listing(tmp_path / "two.tsv", rows), base)
    state.mode = "cut"  # the first response stops half-way: the retry resumes it
    assert download(path, tmp_path) == 0
    first = state.requests[0][0]
    assert state.requests[1] == (first, f"bytes={len(state.files[first]) // 2}-")
    assert len(state.requests) == 11
    manifest = pd.read_csv(tmp_path / "raw" / "manifest.csv")
    assert manifest["subject"].tolist() == subjects
    assert manifest["shape"].tolist() == ["240x240x155"] * 2
    for row in rows:
        subject, key = row[0], row[1]
        got = tmp_path / "raw" / subject / f"{subject}_{key}.nii.gz"
        assert hashlib.sha256(got.read_bytes()).hexdigest() == row[4]
        assert manifest.loc[manifest["subject"] == subject, f"{key}_sha256"].item() == row[4]
    assert not list((tmp_path / "source").rglob("*.part"))


def test_a_wrong_checksum_is_refused_and_the_file_not_kept(server, tiny_listing, tmp_path,
                                                           params, caplog):
    base, state = server
    www, listing = tiny_listing
    serve(state, www, "data/v1")
    rows = rows_for(www, "data/v1")
    good = rows[6][4]
    rows[6] = (*rows[6][:4], "0" * 64)  # LIST-001 t1ce
    path = params_file(tmp_path, params, write_listing(listing, rows), base)
    with caplog.at_level(logging.ERROR):
        assert download(path, tmp_path, "--subject", "LIST-001") == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "data/v1/LIST-001/LIST-001_t1ce.nii.gz: sha256 mismatch" in error
    assert f"expected {'0' * 64}, got {good}" in error and "(LIST-001 t1ce" in error
    folder = staging_dir(tmp_path / "source") / "LIST-001"
    assert sorted(p.name for p in folder.iterdir()) == ["LIST-001_t1.nii.gz"]
    assert not (tmp_path / "raw" / "LIST-001").exists()


def test_a_wrong_size_is_refused_and_the_file_not_kept(server, tiny_listing, tmp_path, params,
                                                       caplog):
    base, state = server
    www, listing = tiny_listing
    serve(state, www, "data/v1")
    rows = rows_for(www, "data/v1")
    rows[0] = (*rows[0][:3], rows[0][3] + 1, rows[0][4])
    path = params_file(tmp_path, params, write_listing(listing, rows), base)
    with caplog.at_level(logging.ERROR):
        assert download(path, tmp_path, "--subject", "LIST-000") == 1
    assert f"size mismatch: expected {rows[0][3]} bytes, got {rows[0][3] - 1}" in caplog.text
    assert not list((staging_dir(tmp_path / "source") / "LIST-000").iterdir())


def test_a_missing_file_gives_one_clear_error(server, tiny_listing, tmp_path, params, caplog):
    base, state = server
    www, listing = tiny_listing
    serve(state, www, "data/v1")
    del state.files["/data/v1/LIST-002/LIST-002_seg.nii.gz"]
    path = params_file(tmp_path, params, listing, base)
    with caplog.at_level(logging.ERROR):
        assert download(path, tmp_path) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert error == (f"{base}/data/v1/LIST-002/LIST-002_seg.nii.gz: HTTP 404 Not Found "
                     f"(LIST-002 seg, {listing})")
    assert not (tmp_path / "raw" / "LIST-002").exists()
    assert not (tmp_path / "raw" / "manifest.csv").exists()


def test_an_unlisted_subject_is_refused(tiny_listing, tmp_path, params, caplog):
    _, listing = tiny_listing
    path = params_file(tmp_path, params, listing, None)
    with caplog.at_level(logging.ERROR):
        assert download(path, tmp_path, "--subject", "LIST-009") == 1
    assert "--subject: unknown ids ['LIST-009'] for these params" in caplog.text
