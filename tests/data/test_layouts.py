"""Source layouts: detection, listing, loading into the internal convention, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg.data.layouts import (
    LABEL_MAPS,
    NIFTI_LAYOUTS,
    dataset_subjects,
    detect_layout,
    from_internal_labels,
    labelled_subjects,
    to_internal_labels,
)
from brainseg.data.loading import Subject, load_source_subject, load_subject
from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError
from tests.conftest import write_subject

REAL_ROOT = Path(__file__).parents[1] / "data" / "real"
SHAPE = (8, 9, 5)
AFFINE = np.array([[-1.2, 0, 0, 10], [0, -1.0, 0, 31], [0, 0, 2.5, -4], [0, 0, 0, 1]])
OFFSETS = {"t1": 1000, "t1ce": 2000, "t2": 3000, "flair": 4000}
NAMES_2023 = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
# Written in each layout's own convention; the value each must become internally.
SOURCE_LABELS = {"brats2020": (0, 1, 2, 4), "brats2023": (0, 1, 2, 3), "decathlon": (0, 1, 2, 3)}
EXPECTED = {"brats2020": {0: 0, 1: 1, 2: 2, 4: 4}, "brats2023": {0: 0, 1: 1, 2: 2, 3: 4},
            "decathlon": {0: 0, 1: 2, 2: 1, 3: 4}}


def volumes(seed: int, shape=SHAPE) -> dict[str, np.ndarray]:
    """int16 modalities with distinct constant offsets, keyed by internal name."""
    rng = np.random.default_rng(seed)
    return {m: (OFFSETS[m] + rng.integers(0, 50, shape)).astype(np.int16) for m in MODALITIES}


def label_map(layout: str, shape=SHAPE) -> np.ndarray:
    """uint8 label map using every label value of the layout."""
    values = np.array(SOURCE_LABELS[layout], dtype=np.uint8)
    return values[np.arange(np.prod(shape)).reshape(shape) % len(values)]


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def write_brats(root: Path, layout: str, subject: str, seed: int = 0, ext: str = ".nii.gz",
                seg: np.ndarray | None = None, skip: str | None = None) -> Path:
    """One subject folder in BraTS 2020 (`_t1ce`) or BraTS 2023 (`-t1c`) naming."""
    folder = root / subject
    sep, names = ("_", dict(zip(MODALITIES, MODALITIES, strict=True))) if layout == "brats2020" \
        else ("-", NAMES_2023)
    for mod, data in volumes(seed).items():
        if names[mod] != skip:
            save(folder / f"{subject}{sep}{names[mod]}{ext}", data)
    save(folder / f"{subject}{sep}seg{ext}", label_map(layout) if seg is None else seg)
    return folder


def write_decathlon(root: Path, channels: int = 4, labels: np.ndarray | None = None) -> Path:
    """Task01 tree: two labelled training subjects, one test subject, dataset.json, junk."""
    for i, subject in enumerate(("BRATS_001", "BRATS_002", "BRATS_750")):
        vols = volumes(i)
        stack = np.stack([vols["flair"], vols["t1"], vols["t1ce"], vols["t2"]], axis=-1)
        part = "imagesTs" if subject == "BRATS_750" else "imagesTr"
        save(root / part / f"{subject}.nii.gz", stack[..., :channels])
        if part == "imagesTr":
            save(root / "labelsTr" / f"{subject}.nii.gz",
                 label_map("decathlon") if labels is None else labels)
    (root / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
    (root / "labelsTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
    (root / "dataset.json").write_text(json.dumps({"name": "BRATS", "modality": {
        "0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}))
    return root


@pytest.fixture
def datasets(tmp_path: Path) -> dict[str, Path]:
    roots = {layout: tmp_path / layout for layout in NIFTI_LAYOUTS}
    write_brats(roots["brats2020"], "brats2020", "BraTS20_Training_001", seed=0)
    write_brats(roots["brats2020"], "brats2020", "BraTS20_Training_002", seed=1, ext=".nii")
    write_brats(roots["brats2023"], "brats2023", "BraTS-GLI-00000-000", seed=0)
    write_brats(roots["brats2023"], "brats2023", "BraTS-GLI-00002-000", seed=1, ext=".nii")
    write_decathlon(roots["decathlon"])
    for layout in ("brats2020", "brats2023"):
        (roots[layout] / "name_mapping.csv").write_text("a,b\n")
        (roots[layout] / ".hidden").mkdir()
    return roots


IDS = {"brats2020": ["BraTS20_Training_001", "BraTS20_Training_002"],
       "brats2023": ["BraTS-GLI-00000-000", "BraTS-GLI-00002-000"],
       "decathlon": ["BRATS_001", "BRATS_002", "BRATS_750"]}


@pytest.mark.parametrize("layout", NIFTI_LAYOUTS)
def test_detect_and_list(datasets, layout):
    assert detect_layout(datasets[layout]) == layout
    assert dataset_subjects(datasets[layout], layout) == IDS[layout]
    assert labelled_subjects(datasets[layout], layout) == IDS[layout][:2]


def test_labelled_subjects_skip_missing_seg(tmp_path):
    write_brats(tmp_path, "brats2023", "B-1")
    folder = write_brats(tmp_path, "brats2023", "B-2")
    (folder / "B-2-seg.nii.gz").unlink()
    (tmp_path / "__MACOSX").mkdir()
    assert dataset_subjects(tmp_path, "brats2023") == ["B-1", "B-2"]
    assert labelled_subjects(tmp_path, "brats2023") == ["B-1"]


@pytest.mark.parametrize("layout", NIFTI_LAYOUTS)
def test_load_internal_convention(datasets, layout):
    for seed, subject in enumerate(IDS[layout][:2]):
        sub = load_source_subject(datasets[layout], layout, subject)
        assert isinstance(sub, Subject) and sub.subject == subject
        vols = volumes(seed)
        assert sub.image.dtype == np.float32 and sub.image.shape == (4, *SHAPE)
        np.testing.assert_array_equal(sub.image, np.stack([vols[m] for m in MODALITIES]))
        means = sub.image.reshape(4, -1).mean(axis=1)
        assert [round(m, -3) for m in means] == [OFFSETS[m] for m in MODALITIES]
        source = label_map(layout)
        expected = np.vectorize(EXPECTED[layout].get)(source).astype(np.uint8)
        assert sub.seg.dtype == np.uint8
        np.testing.assert_array_equal(sub.seg, expected)
        assert set(np.unique(sub.seg).tolist()) == {0, 1, 2, 4}
        np.testing.assert_allclose(sub.affine, AFFINE)
        assert sub.affine.dtype == np.float64
        assert tuple(sub.header.get_data_shape()) == SHAPE
        np.testing.assert_allclose(sub.header.get_zooms(), (1.2, 1.0, 2.5))
        assert sub.dtype == np.int16
        assert set(sub.files) == {*MODALITIES, "seg"}
        assert all(p.is_file() for p in sub.files.values())


def test_decathlon_files_and_unlabelled(datasets):
    root = datasets["decathlon"]
    sub = load_source_subject(root, "decathlon", "BRATS_001")
    assert {sub.files[m] for m in MODALITIES} == {root / "imagesTr" / "BRATS_001.nii.gz"}
    assert sub.files["seg"] == root / "labelsTr" / "BRATS_001.nii.gz"
    assert sub.header["dim"][0] == 3
    test = load_source_subject(root, "decathlon", "BRATS_750")
    assert test.seg is None and "seg" not in test.files
    np.testing.assert_array_equal(test.image, np.stack([volumes(2)[m] for m in MODALITIES]))


def test_brats2020_same_as_load_subject(tmp_path):
    folder = write_subject(tmp_path, "TINY-000", seed=3)
    ref = load_subject(folder)
    sub = load_source_subject(tmp_path, "brats2020", "TINY-000")
    np.testing.assert_array_equal(sub.image, ref.image)
    np.testing.assert_array_equal(sub.seg, ref.seg)
    np.testing.assert_array_equal(sub.affine, ref.affine)
    assert sub.files == ref.files


def test_missing_label_map_gives_none(tmp_path):
    folder = write_brats(tmp_path, "brats2023", "BraTS-GLI-00001-000")
    (folder / "BraTS-GLI-00001-000-seg.nii.gz").unlink()
    assert load_source_subject(tmp_path, "brats2023", "BraTS-GLI-00001-000").seg is None


@pytest.mark.parametrize("layout", NIFTI_LAYOUTS)
def test_label_round_trip(layout):
    source = np.array(sorted(LABEL_MAPS[layout]), dtype=np.uint8).reshape(-1, 1, 1)
    internal = to_internal_labels(source, layout, Path("x.nii.gz"))
    assert internal.dtype == np.uint8
    assert internal.ravel().tolist() == [EXPECTED[layout][v] for v in source.ravel().tolist()]
    np.testing.assert_array_equal(from_internal_labels(internal, layout), source)
    every = np.array([0, 1, 2, 4], dtype=np.uint8)
    back = from_internal_labels(every, layout)
    np.testing.assert_array_equal(to_internal_labels(back, layout, Path("x.nii.gz")), every)
    inverse = {v: k for k, v in LABEL_MAPS[layout].items()}
    assert len(inverse) == len(LABEL_MAPS[layout]) and set(inverse) == {0, 1, 2, 4}
    assert LABEL_MAPS[layout] == EXPECTED[layout]


def test_float_labels_and_bad_internal():
    seg = np.array([[[0.0, 3.0]]], dtype=np.float32)
    assert to_internal_labels(seg, "brats2023", Path("s.nii")).tolist() == [[[0, 4]]]
    with pytest.raises(BrainsegError, match=r"s\.nii: label values \[1\.5\]"):
        to_internal_labels(np.array([1.5]), "brats2023", Path("s.nii"))
    with pytest.raises(BrainsegError, match=r"\[3\] are not internal labels"):
        from_internal_labels(np.array([3]), "decathlon")


def test_unknown_layout_folder(tmp_path):
    save(tmp_path / "case1" / "case1_T1.nii.gz", volumes(0)["t1"])
    with pytest.raises(BrainsegError, match="unknown layout") as err:
        detect_layout(tmp_path)
    assert str(tmp_path) in str(err.value) and "download.layout" in str(err.value)
    with pytest.raises(BrainsegError, match="unknown layout 'brats2019'"):
        dataset_subjects(tmp_path, "brats2019")
    with pytest.raises(BrainsegError, match="unknown layout"):
        load_source_subject(tmp_path, "nifti", "case1")
    with pytest.raises(BrainsegError, match="not found"):
        detect_layout(tmp_path / "nowhere")


def test_missing_modality(tmp_path):
    write_brats(tmp_path, "brats2023", "BraTS-GLI-00001-000", skip="t2f")
    with pytest.raises(BrainsegError, match=r"BraTS-GLI-00001-000-t2f\.nii\.gz: missing"):
        load_source_subject(tmp_path, "brats2023", "BraTS-GLI-00001-000")


def test_undefined_label_brats2023(tmp_path):
    write_brats(tmp_path, "brats2023", "B-1", seg=np.full(SHAPE, 4, np.uint8))
    msg = r"B-1-seg\.nii\.gz: label values \[4\] are not defined by layout brats2023 \(0,1,2,3\)"
    with pytest.raises(BrainsegError, match=msg):
        load_source_subject(tmp_path, "brats2023", "B-1")


def test_undefined_label_decathlon(tmp_path):
    write_decathlon(tmp_path, labels=np.full(SHAPE, 4, np.uint8))
    with pytest.raises(BrainsegError, match=r"BRATS_001\.nii\.gz: label values \[4\].*decathlon"):
        load_source_subject(tmp_path, "decathlon", "BRATS_001")


def test_4d_where_3d_expected(tmp_path):
    folder = write_brats(tmp_path, "brats2020", "S1")
    save(folder / "S1_t1.nii.gz", np.zeros((*SHAPE, 2), np.int16))
    msg = r"S1_t1\.nii\.gz: expected a 3D volume.*\(8, 9, 5, 2\)"
    with pytest.raises(BrainsegError, match=msg):
        load_source_subject(tmp_path, "brats2020", "S1")


def test_decathlon_three_channels(tmp_path):
    write_decathlon(tmp_path, channels=3)
    with pytest.raises(BrainsegError, match=r"BRATS_002\.nii\.gz: expected a 4D.*\(8, 9, 5, 3\)"):
        load_source_subject(tmp_path, "decathlon", "BRATS_002")


def test_decathlon_non_finite(tmp_path):
    write_decathlon(tmp_path)
    bad = np.zeros((*SHAPE, 4), np.float32)
    bad[0, 0, 0, 2] = np.nan
    save(tmp_path / "imagesTr" / "BRATS_001.nii.gz", bad)
    with pytest.raises(BrainsegError, match=r"BRATS_001\.nii\.gz: 1 voxels are NaN"):
        load_source_subject(tmp_path, "decathlon", "BRATS_001")


def test_mismatched_shape_and_affine(tmp_path):
    folder = write_brats(tmp_path, "brats2020", "S1")
    save(folder / "S1_flair.nii.gz", np.zeros((8, 9, 6), np.int16))
    with pytest.raises(BrainsegError, match=r"S1_flair\.nii\.gz: shape \(8, 9, 6\) differs"):
        load_source_subject(tmp_path, "brats2020", "S1")
    save(folder / "S1_flair.nii.gz", np.zeros(SHAPE, np.int16), affine=np.eye(4))
    with pytest.raises(BrainsegError, match=r"S1_flair\.nii\.gz: affine differs"):
        load_source_subject(tmp_path, "brats2020", "S1")


def test_decathlon_label_shape_mismatch(tmp_path):
    write_decathlon(tmp_path, labels=np.zeros((8, 9, 4), np.uint8))
    with pytest.raises(BrainsegError, match=r"labelsTr/BRATS_001\.nii\.gz: shape \(8, 9, 4\)"):
        load_source_subject(tmp_path, "decathlon", "BRATS_001")


def test_decathlon_missing_image_and_dataset_json(tmp_path):
    write_decathlon(tmp_path)
    with pytest.raises(BrainsegError, match=r"imagesTr/BRATS_404\.nii\.gz: missing image"):
        load_source_subject(tmp_path, "decathlon", "BRATS_404")
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(BrainsegError, match=r"no dataset\.json"):
        detect_layout(tmp_path)


def test_real_brats2020_case():
    assert detect_layout(REAL_ROOT) == "brats2020"
    assert dataset_subjects(REAL_ROOT, "brats2020") == ["TCGA-DU-7294"]
    sub = load_source_subject(REAL_ROOT, "brats2020", "TCGA-DU-7294")
    assert sub.image.shape == (4, 240, 240, 155) and sub.seg.shape == (240, 240, 155)
    assert set(np.unique(sub.seg).tolist()) <= {0, 1, 2, 4}
    assert (sub.seg > 0).sum() > 1000
    assert sub.dtype == np.int16
    assert sub.files["t1ce"].name == "TCGA-DU-7294_t1ce.nii.gz"


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.bool_])
def test_integer_label_maps_take_the_table_path_and_name_bad_values(dtype):
    """Any integer dtype: mapped by table look-up; values outside it or out of 0..255 named."""
    values = np.array([0, 1, 2, 4] * 6).reshape(2, 3, 4) % (2 if dtype is np.bool_ else 5)
    seg = np.asfortranarray(values.astype(dtype))
    out = to_internal_labels(seg, "brats2020", Path("s.nii.gz"))
    assert out.dtype == np.uint8 and out.flags.f_contiguous
    np.testing.assert_array_equal(out, seg.astype(np.uint8))
    if dtype is np.bool_:
        return
    for bad, named in ((3, r"\[3\]"), (300, r"\[300\]"), (-1, r"\[-1\]")):
        if not np.can_cast(np.min_scalar_type(bad), dtype):
            continue
        wrong = seg.copy()
        wrong[1, 2, 3] = bad
        with pytest.raises(BrainsegError, match=rf"s\.nii\.gz: label values {named}"):
            to_internal_labels(wrong, "brats2020", Path("s.nii.gz"))
    assert to_internal_labels(np.zeros((0, 2, 2), dtype), "brats2020", Path("s")).shape == (0, 2, 2)
