"""Means per case group in the paper's layout: overlap, volume MAE of the model and of ABC/2."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .run import GROUP_NONE, GROUP_ORDER, CaseResult
from .uncertainty import LEVEL, RESAMPLES, SEED, dsc_by_true_volume, summary_intervals

ALL_CASES = "all cases"


@dataclass(frozen=True)
class GroupSummary:
    """One row of the summary. Overlap means are over the cases whose truth holds hemorrhage (None when the
    group has none); volume errors are over all cases of the group (truth volume 0 for hemorrhage-free)."""

    group: str
    n_cases: int
    n_cases_with_hemorrhage: int
    dsc_mean: float | None
    iou_mean: float | None
    precision_mean: float | None
    recall_mean: float | None
    true_volume_ml_mean: float
    volume_mae_ml_model: float
    volume_mae_ml_abc2: float
    volume_mae_ml_abc2_kothari: float
    volume_mae_ml_abc2_of_prediction: float  # ABC/2 measured on the model's mask, against the true volume
    volume_bias_ml_model: float  # mean of predicted - true
    volume_bias_ml_abc2: float
    volume_bias_ml_abc2_kothari: float
    mae_improvement_pct_vs_abc2: float | None  # (ABC/2 MAE - model MAE) / ABC/2 MAE x 100
    mae_improvement_pct_vs_abc2_kothari: float | None
    seconds_per_case: float

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _improvement(model_mae: float, reference_mae: float) -> float | None:
    return (reference_mae - model_mae) / reference_mae * 100.0 if reference_mae > 0 else None


def summarize_group(name: str, results: Sequence[CaseResult]) -> GroupSummary:
    if not results:
        raise ValueError(f"group {name!r} has no cases")
    bleeding = [r for r in results if r.has_hemorrhage]
    true = np.array([r.true_volume_ml for r in results])
    model = np.array([r.predicted_volume_ml for r in results]) - true
    abc2 = np.array([r.abc2_truth_ml for r in results]) - true
    kothari = np.array([r.abc2_truth_kothari_ml for r in results]) - true
    abc2_of_prediction = np.array([r.abc2_predicted_ml for r in results]) - true
    mae_model, mae_abc2, mae_kothari = (float(np.abs(e).mean()) for e in (model, abc2, kothari))
    return GroupSummary(
        group=name,
        n_cases=len(results),
        n_cases_with_hemorrhage=len(bleeding),
        dsc_mean=_mean([r.dsc for r in bleeding]),
        iou_mean=_mean([r.iou for r in bleeding]),
        precision_mean=_mean([r.precision for r in bleeding]),
        recall_mean=_mean([r.recall for r in bleeding]),
        true_volume_ml_mean=float(true.mean()),
        volume_mae_ml_model=mae_model,
        volume_mae_ml_abc2=mae_abc2,
        volume_mae_ml_abc2_kothari=mae_kothari,
        volume_mae_ml_abc2_of_prediction=float(np.abs(abc2_of_prediction).mean()),
        volume_bias_ml_model=float(model.mean()),
        volume_bias_ml_abc2=float(abc2.mean()),
        volume_bias_ml_abc2_kothari=float(kothari.mean()),
        mae_improvement_pct_vs_abc2=_improvement(mae_model, mae_abc2),
        mae_improvement_pct_vs_abc2_kothari=_improvement(mae_model, mae_kothari),
        seconds_per_case=float(np.mean([r.seconds for r in results])),
    )


def summarize(results: Sequence[CaseResult]) -> list[GroupSummary]:
    """One row per group present (in the paper's order), then the row for all cases."""
    rows = [
        summarize_group(group, members)
        for group in GROUP_ORDER
        if (members := [r for r in results if r.group == group])
    ]
    return [*rows, summarize_group(ALL_CASES, results)]


def summary_dict(results: Sequence[CaseResult], *, binary: bool, extra: dict | None = None) -> dict:
    """The content of summary.json: the all-cases figures at top level, the group rows under "groups"."""
    rows = summarize(results)
    overall = rows[-1].to_dict()
    overall.pop("group")
    hemorrhage_free = [r for r in results if r.group == GROUP_NONE or not r.has_hemorrhage]
    per_type: dict[str, list[float]] = {}
    per_type_own: dict[str, list[float]] = {}  # only the cases whose truth holds the type
    for r in results:
        truth_types = set(r.type.split("+"))
        for name, value in r.dsc_per_type.items():
            per_type.setdefault(name, []).append(value)
            if name in truth_types:
                per_type_own.setdefault(name, []).append(value)
    return {
        **overall,
        "labels": "binary" if binary else "multiclass",
        "dsc_per_type_mean": {name: float(np.mean(v)) for name, v in per_type.items()},
        "dsc_per_type_mean_cases_with_type": {name: float(np.mean(v)) for name, v in per_type_own.items()},
        # Of the voxels found where the truth has hemorrhage, the fraction of the right type (mean over cases).
        "type_agreement_mean": _mean([r.type_agreement for r in results if r.type_agreement is not None]),
        "false_positive_ml_mean_hemorrhage_free": _mean([r.predicted_volume_ml for r in hemorrhage_free]),
        "n_cases_refused": sum(1 for r in results if r.refused),
        **summary_intervals(results),
        "bootstrap": {"method": "percentile, over cases", "level": LEVEL, "resamples": RESAMPLES, "seed": SEED},
        "dsc_by_true_volume": [b.to_dict() for b in dsc_by_true_volume(results)],
        "groups": [row.to_dict() for row in rows],
        **(extra or {}),
    }
