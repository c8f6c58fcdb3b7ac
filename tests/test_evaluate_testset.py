"""The test-set layout of `ichvol evaluate`: discovery, dataset.json, binary detection, clear errors."""

import json

import numpy as np
import pytest

from ichvol.errors import InputError
from ichvol.geometry import VolumeGeometry
from ichvol.labels import Hemorrhage
from ichvol.models.evaluation import load_testset
from ichvol.models.evaluation.run import (
    GROUP_IPH_IVH,
    GROUP_NONE,
    GROUP_OTHER,
    GROUP_SAH,
    GROUP_SDH_EDH,
    GROUP_UNKNOWN,
    group_of,
)
from ichvol.nifti import write_volume


def _geometry(shape):
    z, y, x = shape
    positions = np.arange(z)[:, None] * np.array([0.0, 0.0, 5.0])[None, :]
    return VolumeGeometry(positions, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (0.5, 0.5), y, x)


def _write_case(root, name, labels, image_shape=None):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    shape = image_shape or labels.shape
    write_volume(root / "images" / f"{name}.nii.gz", np.full(shape, 30, np.int16), _geometry(shape))
    write_volume(root / "labels" / f"{name}.nii.gz", labels.astype(np.uint8), _geometry(labels.shape))


def _labels(*values):
    out = np.zeros((3, 6, 6), np.uint8)
    for i, v in enumerate(values):
        out[1, i, 1:3] = v
    return out


def test_multiclass_detected(tmp_path):
    _write_case(tmp_path, "a", _labels(1))
    _write_case(tmp_path, "b", _labels(1, 3))
    ts = load_testset(tmp_path)
    assert [c.name for c in ts.cases] == ["a", "b"]
    assert not ts.binary
    assert [c.max_label for c in ts.cases] == [1, 3]
    assert all(c.declared_types is None for c in ts.cases)


def test_binary_detected_and_overridden(tmp_path):
    _write_case(tmp_path, "a", _labels(1))
    _write_case(tmp_path, "b", _labels())
    assert load_testset(tmp_path).binary
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": "multiclass"}))
    assert not load_testset(tmp_path).binary


def test_dataset_json_types(tmp_path):
    _write_case(tmp_path, "a", _labels(1))
    _write_case(tmp_path, "b", _labels())
    (tmp_path / "dataset.json").write_text(json.dumps({"cases": {"a": {"type": "IVH+IPH"}, "b": {"type": "none"}}}))
    ts = load_testset(tmp_path)
    assert ts.cases[0].declared_types == (Hemorrhage.IPH, Hemorrhage.IVH)
    assert ts.cases[1].declared_types == ()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"labels": "ternary"}), "'labels' must be"),
        (json.dumps({"cases": {"zzz": {"type": "IPH"}}}), "no image/label pair: zzz"),
        (json.dumps({"cases": {"a": {"type": "BLEED"}}}), "unknown hemorrhage type"),
        (json.dumps({"labels": "binary", "cases": {}}), "hold values above 1"),
    ],
)
def test_bad_dataset_json(tmp_path, content, message):
    _write_case(tmp_path, "a", _labels(1, 2))
    (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(InputError, match=message):
        load_testset(tmp_path)


def test_missing_folders_and_files(tmp_path):
    with pytest.raises(InputError, match="no images/ folder"):
        load_testset(tmp_path)
    _write_case(tmp_path, "a", _labels(1))
    _write_case(tmp_path, "b", _labels(1))
    (tmp_path / "labels" / "b.nii.gz").unlink()
    with pytest.raises(InputError, match="no label for b"):
        load_testset(tmp_path)


def test_empty_testset(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(InputError, match="no cases"):
        load_testset(tmp_path)


def test_shape_mismatch(tmp_path):
    _write_case(tmp_path, "a", _labels(1), image_shape=(3, 6, 7))
    with pytest.raises(InputError, match="differs from label shape"):
        load_testset(tmp_path)


def test_different_grids(tmp_path):
    _write_case(tmp_path, "a", _labels(1))
    labels = np.zeros((3, 6, 6), np.uint8)
    moved = _geometry(labels.shape)
    moved = type(moved)(moved.positions + 10.0, moved.row_cosine, moved.col_cosine, (0.5, 0.5), 6, 6)
    write_volume(tmp_path / "labels" / "a.nii.gz", labels, moved)
    with pytest.raises(InputError, match="different grids"):
        load_testset(tmp_path)


def test_label_values_out_of_range(tmp_path):
    _write_case(tmp_path, "a", _labels(7))
    with pytest.raises(InputError, match=r"must lie in 0\.\.5"):
        load_testset(tmp_path)


def test_unreadable_file(tmp_path):
    _write_case(tmp_path, "a", _labels(1))
    (tmp_path / "images" / "a.nii.gz").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable NIfTI"):
        load_testset(tmp_path)


def test_groups_follow_the_paper():
    H = Hemorrhage
    assert group_of((H.IPH,)) == GROUP_IPH_IVH
    assert group_of((H.IPH, H.IVH)) == GROUP_IPH_IVH
    assert group_of((H.SAH,)) == GROUP_SAH
    assert group_of((H.SDH, H.EDH)) == GROUP_SDH_EDH
    assert group_of((H.IPH, H.SAH)) == GROUP_OTHER
    assert group_of(()) == GROUP_NONE
    assert group_of(None) == GROUP_UNKNOWN
