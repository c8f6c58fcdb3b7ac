"""Scoring one case: merged overlap, per-type DSC, volumes on a tilted grid, ABC/2 from both masks."""

import numpy as np
import pytest

from ichvol.geometry import VolumeGeometry
from ichvol.labels import Hemorrhage
from ichvol.measure import measure_labels
from ichvol.models.evaluation import score_case, summarize


def _tilted(shape, tilt_degrees=15.0, spacing=(0.5, 0.5), gap=5.0):
    z, y, x = shape
    step = np.array([0.0, gap * np.tan(np.radians(tilt_degrees)), gap])
    return VolumeGeometry(
        np.arange(z)[:, None] * step[None, :], np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), spacing, y, x
    )


@pytest.fixture
def pair():
    truth = np.zeros((6, 40, 40), np.uint8)
    truth[1:5, 5:25, 5:25] = Hemorrhage.IPH
    truth[2:4, 28:34, 28:34] = Hemorrhage.IVH
    prediction = np.zeros_like(truth)
    prediction[1:5, 7:25, 5:25] = Hemorrhage.IPH  # 2 rows short
    prediction[2:4, 28:34, 28:34] = Hemorrhage.SAH  # right place, wrong type
    return truth, prediction


def test_multiclass_case(pair):
    truth, prediction = pair
    geometry = _tilted(truth.shape)
    result = score_case("c", truth, prediction, geometry, binary=False, seconds=1.5)
    voxel_ml = 0.25 * 5.0 / 1000  # the slab along the normal, not the tilted step
    n_truth, n_pred = 4 * 400 + 2 * 36, 4 * 360 + 2 * 36
    assert result.true_volume_ml == pytest.approx(n_truth * voxel_ml)
    assert result.predicted_volume_ml == pytest.approx(n_pred * voxel_ml)
    assert result.dsc == pytest.approx(2 * n_pred / (n_truth + n_pred))  # merged: the type error costs nothing
    assert result.precision == 1.0
    assert result.recall == pytest.approx(n_pred / n_truth)
    assert result.dsc_per_type["IVH"] == 0.0 and result.dsc_per_type["SAH"] == 0.0
    assert result.dsc_per_type["IPH"] == pytest.approx(2 * 1440 / 3040)
    assert result.type_agreement == pytest.approx(1440 / n_pred)  # the 72 SAH voxels lie on IVH
    assert result.type == "IPH+IVH" and result.group == "IPH+IVH+mixed"
    expected = measure_labels(truth, geometry)
    assert result.abc2_truth_ml == pytest.approx(expected.total_abc2_ml)
    assert result.abc2_truth_kothari_ml == pytest.approx(expected.total_abc2_kothari_ml)
    assert result.abc2_predicted_ml == pytest.approx(measure_labels(prediction, geometry).total_abc2_ml)
    row = summarize([result])[-1]
    assert row.volume_mae_ml_model == pytest.approx(abs(result.predicted_volume_ml - result.true_volume_ml))
    assert row.volume_mae_ml_abc2 == pytest.approx(abs(result.abc2_truth_ml - result.true_volume_ml))
    assert result.seconds == 1.5


def test_binary_case_merges_and_has_no_type(pair):
    truth, prediction = pair
    geometry = _tilted(truth.shape)
    result = score_case("c", (truth > 0).astype(np.uint8), prediction, geometry, binary=True)
    assert result.type == "unknown" and result.group == "type unknown"
    assert result.dsc_per_type == {} and result.type_agreement is None
    # Merged before measuring: the IPH and IVH parts are measured as one kind of blood.
    merged = measure_labels((truth > 0).astype(np.uint8), geometry)
    assert result.abc2_truth_ml == pytest.approx(merged.total_abc2_ml)
    declared = score_case(
        "c",
        (truth > 0).astype(np.uint8),
        prediction,
        geometry,
        binary=True,
        declared_types=(Hemorrhage.IPH, Hemorrhage.IVH),
    )
    assert declared.type == "IPH+IVH" and declared.group == "IPH+IVH+mixed"


def test_hemorrhage_free_case():
    geometry = _tilted((4, 10, 10), tilt_degrees=0.0)
    truth = np.zeros(geometry.shape, np.uint8)
    prediction = truth.copy()
    prediction[1, 2:4, 2:4] = 1
    result = score_case("c", truth, prediction, geometry, binary=False)
    assert result.type == "none" and result.group == "no hemorrhage"
    assert result.true_volume_ml == 0.0 and result.abc2_truth_ml == 0.0
    assert result.predicted_volume_ml == pytest.approx(4 * 1.25 / 1000)
    assert (result.dsc, result.recall, result.precision) == (0.0, 1.0, 0.0)


def test_prediction_shape_must_match():
    geometry = _tilted((4, 10, 10))
    with pytest.raises(ValueError, match="differs from truth"):
        score_case("c", np.zeros(geometry.shape, np.uint8), np.zeros((4, 10, 9), np.uint8), geometry, binary=False)
