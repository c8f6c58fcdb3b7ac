"""How much a test set's means would move with another draw of cases: percentile bootstrap intervals over
cases, and mean Dice by true hemorrhage volume (small lesions weigh as much as large ones in a per-case
mean, and they are where Dice is lost)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import bootstrap

from .run import CaseResult

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0  # fixed: the same results give the same interval
VOLUME_EDGES_ML = (2.0, 10.0, 30.0)


def bootstrap_interval(values: Sequence[float] | np.ndarray,
                       statistic: Callable[..., np.ndarray] = np.mean) -> tuple[float, float] | None:
    """The 95% percentile-bootstrap interval of `statistic` (called as `statistic(sample, axis=...)`) over the
    values (one per case); None for fewer than 2 values, where a resample can only repeat the one case."""
    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return None
    if np.all(data == data[0]):
        return (float(data[0]), float(data[0]))  # every resample gives the same statistic
    result = bootstrap((data,), lambda sample, axis: statistic(sample, axis=axis), vectorized=True,
                       n_resamples=RESAMPLES, confidence_level=LEVEL, method="percentile",
                       random_state=np.random.default_rng(SEED))
    interval = result.confidence_interval
    return (float(interval.low), float(interval.high))


def _mean_absolute(sample: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.abs(sample).mean(axis=axis)


def summary_intervals(results: Sequence[CaseResult]) -> dict[str, list[float] | None]:
    """summary.json's intervals: mean Dice over the cases with hemorrhage, the model's and ABC/2's volume MAE
    over all cases."""
    bleeding = [r.dsc for r in results if r.has_hemorrhage]
    model = [r.predicted_volume_ml - r.true_volume_ml for r in results]
    abc2 = [r.abc2_truth_ml - r.true_volume_ml for r in results]

    def listed(interval):
        return None if interval is None else list(interval)

    return {
        "dsc_mean_ci95": listed(bootstrap_interval(bleeding)),
        "volume_mae_ml_model_ci95": listed(bootstrap_interval(model, _mean_absolute)),
        "volume_mae_ml_abc2_ci95": listed(bootstrap_interval(abc2, _mean_absolute)),
    }


@dataclass(frozen=True)
class VolumeBin:
    """Cases with hemorrhage whose true volume lies in [low_ml, high_ml) (high_ml None: no upper bound)."""

    low_ml: float
    high_ml: float | None
    n_cases: int
    dsc_mean: float | None
    recall_mean: float | None

    @property
    def label(self) -> str:
        if self.high_ml is None:
            return f">= {self.low_ml:g} ml"
        return f"< {self.high_ml:g} ml" if self.low_ml == 0 else f"{self.low_ml:g}-{self.high_ml:g} ml"

    def to_dict(self) -> dict:
        return {"range_ml": self.label, **asdict(self)}


def dsc_by_true_volume(results: Sequence[CaseResult], edges_ml: Sequence[float] = VOLUME_EDGES_ML) -> list[VolumeBin]:
    bounds = [0.0, *edges_ml, None]
    bins = []
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        members = [r for r in results if r.has_hemorrhage and r.true_volume_ml >= low
                   and (high is None or r.true_volume_ml < high)]
        bins.append(VolumeBin(
            low_ml=low,
            high_ml=high,
            n_cases=len(members),
            dsc_mean=float(np.mean([r.dsc for r in members])) if members else None,
            recall_mean=float(np.mean([r.recall for r in members])) if members else None,
        ))
    return bins
