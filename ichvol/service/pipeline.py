"""One job's work: the study's spool files -> series selection -> cascade -> SEG + SR under the data folder."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..image import CTImage
from ..results import AlgorithmInfo, ResultFiles, ResultUIDs

log = logging.getLogger(__name__)


class Segmenter(Protocol):
    """What the worker needs of a model: ichvol.models.predictor.CascadePredictor is one."""

    algorithm: AlgorithmInfo

    def predict(self, image: CTImage): ...  # returns an object with `.labels` (uint8, z/y/x)


@dataclass(frozen=True)
class PipelineResult:
    files: ResultFiles
    series_uid: str | None
    selection: dict
    load_seconds: float
    inference_seconds: float
    encode_seconds: float


def stage_inputs(files: list[Path], folder: Path) -> Path:
    """Hard-link (or copy, across file systems) the study's spool files into a fresh per-job folder."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, source in enumerate(files):
        target = folder / f"{i:06d}.dcm"
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return folder


def run_pipeline(files: list[Path], work_dir: Path, out_dir: Path, uids: ResultUIDs,
                 segmenter: Segmenter, min_slices: int) -> PipelineResult:
    """Raises NoSuitableSeriesError (and other InputErrors) when the study has nothing to process."""
    from ..dicom import load_ct_image
    from ..encode import write_results

    started = time.perf_counter()
    folder = stage_inputs(files, work_dir / "input")
    try:
        image, selection = load_ct_image(folder, min_slices=min_slices)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    loaded = time.perf_counter()
    labels = np.asarray(segmenter.predict(image).labels)
    predicted = time.perf_counter()
    result = write_results(image, labels, out_dir, uids, segmenter.algorithm)
    encoded = time.perf_counter()
    return PipelineResult(
        files=result, series_uid=image.series_instance_uid, selection=selection.describe(),
        load_seconds=loaded - started, inference_seconds=predicted - loaded, encode_seconds=encoded - predicted,
    )
