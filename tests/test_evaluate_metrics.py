"""Overlap and volume metrics of the evaluation on hand-made label maps."""

import numpy as np
import pytest

from ichvol.geometry import VolumeGeometry
from ichvol.labels import Hemorrhage
from ichvol.models.evaluation import label_volume_ml, overlap_scores, per_type_dsc
from ichvol.models.evaluation.metrics import type_agreement


def _geometry(shape, spacing=(0.5, 0.5), step=(0.0, 0.0, 5.0)):
    z, y, x = shape
    positions = np.arange(z)[:, None] * np.asarray(step, dtype=float)[None, :]
    return VolumeGeometry(positions, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), spacing, y, x)


def test_known_overlap():
    truth = np.zeros((1, 1, 10), np.uint8)
    pred = np.zeros_like(truth)
    truth[0, 0, :6] = 1  # 6 true voxels
    pred[0, 0, 2:10] = 1  # 8 predicted, 4 of them true
    s = overlap_scores(truth, pred)
    assert (s.true_positive, s.false_positive, s.false_negative) == (4, 4, 2)
    assert s.dsc == pytest.approx(8 / 14)
    assert s.iou == pytest.approx(4 / 10)
    assert s.precision == pytest.approx(4 / 8)
    assert s.recall == pytest.approx(4 / 6)


def test_labels_are_merged_for_overlap():
    truth = np.array([[[1, 2, 0, 0]]])
    pred = np.array([[[2, 1, 0, 3]]])
    s = overlap_scores(truth, pred)
    assert s.dsc == pytest.approx(4 / 5)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == 1.0


def test_empty_cases():
    empty = np.zeros((2, 3, 3), np.uint8)
    some = empty.copy()
    some[1, 1, 1] = 1
    both = overlap_scores(empty, empty)
    assert (both.dsc, both.iou, both.precision, both.recall) == (1.0, 1.0, 1.0, 1.0)
    false_alarm = overlap_scores(empty, some)  # nothing to find, something claimed
    assert (false_alarm.dsc, false_alarm.iou, false_alarm.precision, false_alarm.recall) == (
        0.0,
        0.0,
        0.0,
        1.0,
    )
    missed = overlap_scores(some, empty)  # something missed, nothing claimed
    assert (missed.dsc, missed.iou, missed.precision, missed.recall) == (0.0, 0.0, 1.0, 0.0)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differs"):
        overlap_scores(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


def test_per_type_dsc():
    truth = np.array([[[1, 1, 2, 2, 0, 0]]])
    pred = np.array([[[1, 0, 2, 2, 3, 0]]])
    scores = per_type_dsc(truth, pred)
    assert set(scores) == {Hemorrhage.IPH, Hemorrhage.IVH, Hemorrhage.SAH}
    assert scores[Hemorrhage.IPH] == pytest.approx(2 / 3)
    assert scores[Hemorrhage.IVH] == 1.0
    assert scores[Hemorrhage.SAH] == 0.0  # predicted but absent from the truth


def test_type_agreement_counts_only_voxels_both_call_hemorrhage():
    truth = np.array([[[1, 1, 2, 2, 0, 4]]])
    pred = np.array([[[1, 0, 2, 3, 3, 0]]])
    assert type_agreement(truth, pred) == pytest.approx(2 / 3)  # voxels 0, 2, 3 are found; 3 has the wrong type
    assert type_agreement(truth, np.where(truth > 0, 0, 5)) is None  # nothing found where the truth has blood


def test_volume_untilted():
    geometry = _geometry((4, 8, 8))  # voxel 0.5 x 0.5 x 5 mm = 1.25 mm^3
    mask = np.zeros(geometry.shape, np.uint8)
    mask[1:3, 2:6, 2:6] = 3
    assert label_volume_ml(mask, geometry) == pytest.approx(32 * 1.25 / 1000)


def test_volume_with_tilt_uses_spacing_along_the_normal():
    # Gantry tilt of 20 degrees: the slice-to-slice step is 5 mm along the normal plus a shift along y.
    shift = 5.0 * np.tan(np.radians(20))
    geometry = _geometry((5, 8, 8), step=(0.0, shift, 5.0))
    assert geometry.tilt_degrees == pytest.approx(20, abs=1e-6)
    mask = np.zeros(geometry.shape, np.uint8)
    mask[1:4, 2:4, 2:4] = 1
    naive = 12 * 0.25 * float(np.linalg.norm([0, shift, 5.0])) / 1000  # step length, wrong under tilt
    expected = 12 * 0.25 * 5.0 / 1000
    assert label_volume_ml(mask, geometry) == pytest.approx(expected)
    assert abs(naive - expected) > 1e-4


def test_volume_with_uneven_gaps():
    geometry = VolumeGeometry(
        np.array([[0, 0, 0.0], [0, 0, 4.0], [0, 0, 12.0]]),
        np.array([1.0, 0, 0]),
        np.array([0, 1.0, 0]),
        (1.0, 1.0),
        2,
        2,
    )
    mask = np.ones(geometry.shape, np.uint8)
    # slabs: 4, (4+8)/2 = 6, 8 mm; 4 voxels of 1 mm^2 per slice
    assert label_volume_ml(mask, geometry) == pytest.approx(4 * (4 + 6 + 8) / 1000)
