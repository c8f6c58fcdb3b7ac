"""Predict every case of a test set and score it against its labels."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import numpy as np

from ichvol.errors import NotAHeadCTError
from ichvol.geometry import VolumeGeometry
from ichvol.image import CTImage
from ichvol.labels import Hemorrhage

from .metrics import label_volume_ml, overlap_scores, per_type_dsc, type_agreement
from .testset import TestCase, TestSet

GROUP_IPH_IVH = "IPH+IVH+mixed"
GROUP_SAH = "SAH"
GROUP_SDH_EDH = "SDH/EDH"
GROUP_OTHER = "other mixed"
GROUP_NONE = "no hemorrhage"
GROUP_UNKNOWN = "type unknown"
GROUP_ORDER = (GROUP_IPH_IVH, GROUP_SAH, GROUP_SDH_EDH, GROUP_OTHER, GROUP_UNKNOWN, GROUP_NONE)


class Prediction(Protocol):
    labels: np.ndarray


class Predictor(Protocol):
    def predict(self, image: CTImage) -> Prediction: ...


@dataclass(frozen=True)
class CaseResult:
    name: str
    type: str  # "IPH+IVH", "SAH", "none", or "unknown" (binary labels without dataset.json)
    group: str  # one of GROUP_ORDER
    dsc: float
    iou: float
    precision: float
    recall: float
    true_volume_ml: float
    predicted_volume_ml: float
    abc2_truth_ml: float
    abc2_truth_kothari_ml: float
    abc2_predicted_ml: float
    abc2_predicted_kothari_ml: float
    seconds: float
    dsc_per_type: dict[str, float] = field(default_factory=dict)  # multi-class only
    type_agreement: float | None = None  # multi-class only: see metrics.type_agreement
    refused: str = ""  # why the model refused the image (scored as finding nothing); empty when it predicted

    @property
    def has_hemorrhage(self) -> bool:
        return self.true_volume_ml > 0

    def to_dict(self) -> dict:
        return asdict(self)


def group_of(types: tuple[Hemorrhage, ...] | None) -> str:
    """The paper's grouping: IPH, IVH and their mix together; SAH alone; SDH/EDH; anything else mixed."""
    if types is None:
        return GROUP_UNKNOWN
    kinds = set(types)
    if not kinds:
        return GROUP_NONE
    if kinds <= {Hemorrhage.IPH, Hemorrhage.IVH}:
        return GROUP_IPH_IVH
    if kinds == {Hemorrhage.SAH}:
        return GROUP_SAH
    if kinds <= {Hemorrhage.SDH, Hemorrhage.EDH}:
        return GROUP_SDH_EDH
    return GROUP_OTHER


def _types_in(labels: np.ndarray) -> tuple[Hemorrhage, ...]:
    return tuple(Hemorrhage(v) for v in sorted(set(np.unique(labels).tolist()) - {0}))


def score_case(
    name: str,
    truth: np.ndarray,
    prediction: np.ndarray,
    geometry: VolumeGeometry,
    *,
    binary: bool,
    declared_types: tuple[Hemorrhage, ...] | None = None,
    seconds: float = 0.0,
) -> CaseResult:
    """Score one prediction against its truth. With binary truth both maps are merged to one class first."""
    from ichvol.measure import measure_labels  # engineer B's measures (ABC/2)

    if truth.shape != prediction.shape:
        raise ValueError(f"case {name}: prediction shape {prediction.shape} differs from truth {truth.shape}")
    if binary:
        truth = (truth != 0).astype(np.uint8)
        prediction = (prediction != 0).astype(np.uint8)
    types = declared_types if declared_types is not None else (None if binary else _types_in(truth))
    overlap = overlap_scores(truth, prediction)
    measured_truth = measure_labels(truth, geometry)
    measured_prediction = measure_labels(prediction, geometry)
    return CaseResult(
        name=name,
        type="unknown" if types is None else ("+".join(t.name for t in types) or "none"),
        group=group_of(types),
        dsc=overlap.dsc,
        iou=overlap.iou,
        precision=overlap.precision,
        recall=overlap.recall,
        true_volume_ml=label_volume_ml(truth, geometry),
        predicted_volume_ml=label_volume_ml(prediction, geometry),
        abc2_truth_ml=float(measured_truth.total_abc2_ml),
        abc2_truth_kothari_ml=float(measured_truth.total_abc2_kothari_ml),
        abc2_predicted_ml=float(measured_prediction.total_abc2_ml),
        abc2_predicted_kothari_ml=float(measured_prediction.total_abc2_kothari_ml),
        seconds=float(seconds),
        dsc_per_type={} if binary else {t.name: v for t, v in per_type_dsc(truth, prediction).items()},
        type_agreement=None if binary else type_agreement(truth, prediction),
    )


def evaluate_case(case: TestCase, predictor: Predictor, *, binary: bool) -> CaseResult:
    """A case the model refuses (not a head CT) is scored as finding nothing, as the service would report
    nothing for it, and says why in `refused`."""
    image, truth, truth_geometry = case.load()
    started = time.perf_counter()
    refused = ""
    try:
        labels = np.asarray(predictor.predict(image).labels)
    except NotAHeadCTError as exc:
        labels, refused = np.zeros(np.shape(truth), dtype=np.uint8), str(exc)
    seconds = time.perf_counter() - started
    result = score_case(
        case.name,
        np.asarray(truth).astype(np.uint8),
        labels,
        truth_geometry,
        binary=binary,
        declared_types=case.declared_types,
        seconds=float(seconds),
    )
    return replace(result, refused=refused) if refused else result


def evaluate_testset(testset: TestSet, predictor: Predictor) -> Iterator[CaseResult]:
    """Yield the result of each case in name order (a generator, so that callers can show progress)."""
    for case in testset.cases:
        yield evaluate_case(case, predictor, binary=testset.binary)
