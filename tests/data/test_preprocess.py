from __future__ import annotations

import numpy as np
import pytest

from brainseg.data.labels import labels_to_regions, regions_to_labels
from brainseg.data.loading import load_subject
from brainseg.data.preprocess import (
    SliceGeometry,
    extract_slices,
    normalize_slices,
    slice_geometry,
    to_original_grid,
)
from brainseg.errors import BrainsegError
from tests.conftest import write_subject


def test_labels_regions_round_trip():
    labels = np.array([0, 1, 2, 4, 4, 2], dtype=np.uint8)
    regions = labels_to_regions(labels)
    assert regions.tolist() == [[0, 1, 1, 1, 1, 1], [0, 1, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0]]
    np.testing.assert_array_equal(regions_to_labels(regions), labels)


def test_regions_to_labels_enforces_nesting():
    # ET without TC, TC without WT: nothing outside WT, ET needs TC
    regions = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=bool)
    assert regions_to_labels(regions).tolist() == [0, 2, 1]


def test_geometry_is_square_and_keeps_brain_slices():
    mask = np.zeros((40, 50, 10), bool)
    mask[10:20, 5:35, 2:8] = True
    mask[15, 15, 8] = True  # a slice with one voxel: dropped
    geo = slice_geometry(mask, image_size=32, margin=2, min_brain_pixels=2)
    assert geo.z == (2, 3, 4, 5, 6, 7)
    assert geo.side == 30 + 4
    assert geo.y0 == 5 - 2 and geo.x0 == 15 - 17


def test_geometry_refuses_an_empty_brain():
    with pytest.raises(BrainsegError, match="no axial slice"):
        slice_geometry(np.zeros((8, 8, 4), bool), 16, 0, 1)


def test_to_original_grid_inverts_the_crop_exactly_at_native_size():
    rng = np.random.default_rng(0)
    volume = np.zeros((3, 30, 26, 6), np.float32)
    volume[:, 4:20, 3:25, 1:5] = rng.random((3, 16, 22, 4))
    slices, _, _, geo = extract_slices(volume, None, image_size=22, margin=0,
                                       min_brain_pixels=1)
    assert geo.side == 22  # no resize at image_size == side
    back = to_original_grid(slices, geo)
    np.testing.assert_allclose(back, volume, atol=1e-6)


def test_extract_and_map_back_preserve_the_tumour(tmp_path):
    subject = load_subject(write_subject(tmp_path, "S-001"))
    slices, labels, brain, geo = extract_slices(subject.image, subject.seg, 32, 2, 4)
    assert slices.shape == (len(geo.z), 4, 32, 32) and labels.shape == (len(geo.z), 32, 32)
    assert brain.dtype == bool and labels.dtype == np.uint8
    regions = labels_to_regions(labels).transpose(1, 0, 2, 3).astype(np.float32)
    back = to_original_grid(regions, geo) > 0.5
    wt = subject.seg > 0
    dice = 2 * (back[0] & wt).sum() / (back[0].sum() + wt.sum())
    assert dice > 0.9


def test_normalize_gives_zero_mean_unit_std_in_brain():
    rng = np.random.default_rng(1)
    slices = rng.normal(300, 50, (5, 2, 16, 16)).astype(np.float32)
    brain = np.zeros((5, 16, 16), bool)
    brain[:, 2:14, 2:14] = True
    out, stats = normalize_slices(slices, brain, (0.0, 100.0))
    assert out.dtype == np.float16
    for c in range(2):
        vals = out[:, c][brain].astype(np.float64)
        assert abs(vals.mean()) < 1e-2 and abs(vals.std() - 1) < 1e-2
        assert (out[:, c][~brain] == 0).all()
    assert len(stats["mean"]) == 2


def test_geometry_round_trips_through_json():
    geo = SliceGeometry((10, 12, 4), -1, 2, 11, (0, 2), 16)
    assert SliceGeometry.from_dict(geo.to_dict()) == geo


def test_native_volumes_extract_exactly_like_the_float32_image(tmp_path):
    """`load_subject(native=True)`: the four stored (int16) volumes, read-only, no float32
    copy; `extract_slices` casts each cropped plane and gives the same bytes."""
    folder = write_subject(tmp_path, "S-001", shape=(40, 36, 14))
    floats, native = load_subject(folder), load_subject(folder, native=True)
    assert isinstance(native.image, tuple) and len(native.image) == 4
    assert all(v.dtype == np.int16 and not v.flags.writeable for v in native.image)
    np.testing.assert_array_equal(native.seg, floats.seg)
    got = extract_slices(native.image, native.seg, 24, 2, 4)
    expected = extract_slices(floats.image, floats.seg, 24, 2, 4)
    for a, b in zip(got[:3], expected[:3], strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert got[3] == expected[3]
