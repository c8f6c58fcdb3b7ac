"""Load the CT volume of a study folder (or a NIfTI file) as a CTImage."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import InputError, NoSuitableSeriesError
from ..image import CTImage
from ..nifti import read_volume
from .assemble import assemble_series
from .parts import series_parts
from .scan import StudyScan, read_study
from .selection import (
    CT_IMAGE_CLASSES,
    DEFAULT_MIN_SLICES,
    SeriesSelection,
    select_series,
    series_problem,
    stack_problem,
)

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def load_ct_image(
    folder: Path, series_uid: str | None = None, min_slices: int = DEFAULT_MIN_SLICES
) -> tuple[CTImage, SeriesSelection]:
    """Read a study folder, choose its CT series (or take `series_uid`) and build the volume.

    The selection's warnings include those found while building (dropped duplicates, gaps).
    """
    scan = read_study(Path(folder))
    selection = _requested(scan, series_uid) if series_uid else _selected(scan, min_slices)
    image, warnings = assemble_series(selection.series)
    return image, replace(selection, warnings=selection.warnings + tuple(warnings))


def load_image(path: Path) -> CTImage:
    """A CT volume from a DICOM folder (or file) or a NIfTI file (.nii, .nii.gz; no DICOM headers then)."""
    path = Path(path)
    if path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES):
        array, geometry = read_volume(path)
        return CTImage(_hu_dtype(array), geometry)
    return load_ct_image(path)[0]


def _selected(scan: StudyScan, min_slices: int) -> SeriesSelection:
    try:
        return select_series(scan, min_slices)
    except NoSuitableSeriesError as exc:
        # A study of one CT series that cannot form a volume is a geometry error, said as such.
        ct_series = [s for s in scan.series.values() if s.sop_class_uid in CT_IMAGE_CLASSES]
        if len(ct_series) == 1 and (problem := stack_problem(ct_series[0])) is not None:
            raise type(problem)(f"series {ct_series[0].label()}: {problem}") from exc
        raise


def _requested(scan: StudyScan, series_uid: str) -> SeriesSelection:
    """The series asked for (a UID, or a part's "UID#n"); of a series that mixes stacks, its best part."""
    stacks = series_parts(scan)
    asked = {key: s for key, s in stacks.items() if series_uid in (key, s.uid)}
    if not asked:
        raise InputError(f"series {series_uid} is not in {scan.folder} ({len(scan.series)} other series)")
    if len(asked) > 1:
        return select_series(StudyScan(scan.folder, {s.key: s for s in asked.values()}), 2, 90.0)
    key, series = next(iter(asked.items()))
    if series.sop_class_uid in CT_IMAGE_CLASSES and (problem := stack_problem(series)) is not None:
        raise type(problem)(f"series {series.label()}: {problem}")
    reason = series_problem(series, min_slices=2, max_tilt_degrees=90.0)
    if reason:
        raise NoSuitableSeriesError(f"series {series.label()}: {reason}", {key: reason})
    others = {other: f"series {s.label()}: not requested" for other, s in stacks.items() if other != key}
    return SeriesSelection(key, series, others, (key,))


def _hu_dtype(array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer) and array.min() >= -32768 and array.max() <= 32767:
        return array.astype(np.int16)
    return array.astype(np.float32)
