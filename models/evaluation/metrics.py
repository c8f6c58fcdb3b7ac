"""Overlap and volume metrics on (z, y, x) label maps.

Empty masks: a ratio whose denominator is zero is defined by what the mask pair means, so that every case
has a finite score:
- DSC and IoU are 1 when truth and prediction are both empty (perfect agreement), else 0 when either is empty.
- precision is 1 when nothing is predicted (no false claim), recall is 1 when the truth is empty (nothing
  missed).
The summary averages overlap scores over cases whose truth holds hemorrhage (as the paper did) and reports
the false-positive volume of hemorrhage-free cases separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ichvol.geometry import VolumeGeometry
from ichvol.labels import Hemorrhage


@dataclass(frozen=True)
class OverlapScores:
    dsc: float
    iou: float
    precision: float
    recall: float
    true_positive: int
    false_positive: int
    false_negative: int


def overlap_scores(truth: np.ndarray, prediction: np.ndarray) -> OverlapScores:
    """Scores of two masks of the same shape (any non-zero value is foreground)."""
    if truth.shape != prediction.shape:
        raise ValueError(f"truth shape {truth.shape} differs from prediction shape {prediction.shape}")
    t = np.asarray(truth) != 0
    p = np.asarray(prediction) != 0
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    if tp + fp + fn == 0:
        return OverlapScores(1.0, 1.0, 1.0, 1.0, 0, 0, 0)
    return OverlapScores(
        dsc=2 * tp / (2 * tp + fp + fn),
        iou=tp / (tp + fp + fn),
        precision=tp / (tp + fp) if tp + fp else 1.0,
        recall=tp / (tp + fn) if tp + fn else 1.0,
        true_positive=tp,
        false_positive=fp,
        false_negative=fn,
    )


def per_type_dsc(truth: np.ndarray, prediction: np.ndarray) -> dict[Hemorrhage, float]:
    """DSC of each type present in the truth or the prediction (types absent from both are left out)."""
    present = (set(np.unique(truth).tolist()) | set(np.unique(prediction).tolist())) - {0}
    return {
        Hemorrhage(value): overlap_scores(truth == value, prediction == value).dsc
        for value in sorted(present)
        if value in Hemorrhage._value2member_map_
    }


def type_agreement(truth: np.ndarray, prediction: np.ndarray) -> float | None:
    """Of the voxels both maps call hemorrhage, the fraction given the same type: typing, apart from finding.
    None where they share no hemorrhage voxel."""
    both = (truth != 0) & (prediction != 0)
    count = int(both.sum())
    return None if count == 0 else float((truth[both] == prediction[both]).sum() / count)


def label_volume_ml(mask: np.ndarray, geometry: VolumeGeometry) -> float:
    """Volume of the non-zero voxels in ml: per-slice voxel counts times that slice's true voxel volume
    (slab along the normal, so gantry tilt and uneven gaps are accounted for)."""
    if mask.shape != geometry.shape:
        raise ValueError(f"mask shape {mask.shape} does not match geometry {geometry.shape}")
    per_slice = np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1)
    return float(per_slice @ geometry.voxel_volumes_ml())
