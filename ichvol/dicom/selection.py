"""Pick the series of a study to process, with a readable reason for every series left out.

Series descriptions are unreliable, so the choice rests on SOP class, modality, image type, geometry,
kernel and slice count. A series qualifies when it is a CT image stack (classic or enhanced), not a
localizer or projection, axial within `max_tilt_degrees` (so tilted gantry series pass) and has at least
`min_slices` slice positions. Among those that qualify: soft-tissue kernel before unknown before bone/lung
(the kernel changes the image more than a reformat does), then ORIGINAL/PRIMARY before derived (axial
reformats), then more slices, then the lower series number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from pydicom.uid import UID

from ..errors import GeometryError, NoSuitableSeriesError
from .frames import Frame, frames_of, functional_group
from .kernels import KernelClass, classify_kernel
from .scan import SeriesScan, StudyScan
from .stack import axial_angle_degrees, check_consistent, sorted_by_position

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
CT_IMAGE_CLASSES = {CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE}

# ImageType values of images that are not a slice stack to segment.
_NOT_A_STACK = {"LOCALIZER": "localizer (scout)", "MIP": "maximum intensity projection",
                "MINIP": "minimum intensity projection", "PROJECTION IMAGE": "projection image",
                "VOLUME RENDERING": "volume rendering", "VR": "volume rendering", "CURVED": "curved reformat"}

DEFAULT_MIN_SLICES = 8
DEFAULT_MAX_TILT_DEGREES = 30.0
_SAME_POSITION_MM = 0.01


@dataclass(frozen=True)
class SeriesSelection:
    """The chosen series, every other one with the reason it was not chosen, and warnings about the choice.

    `candidates` lists the series that qualified, best first (the chosen one first).
    """

    chosen: str
    rejected: dict[str, str] = field(default_factory=dict)
    candidates: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def describe(self) -> dict:
        return {"chosen": self.chosen, "candidates": list(self.candidates),
                "rejected": dict(self.rejected), "warnings": list(self.warnings)}


def select_series(
    scan: StudyScan,
    min_slices: int = DEFAULT_MIN_SLICES,
    max_tilt_degrees: float = DEFAULT_MAX_TILT_DEGREES,
) -> SeriesSelection:
    """Choose the series to process; raise NoSuitableSeriesError (with every reason) when none qualifies."""
    rejected: dict[str, str] = {}
    ranked: list[tuple[tuple, str]] = []
    for uid, series in scan.series.items():
        problem = series_problem(series, min_slices, max_tilt_degrees)
        if problem:
            rejected[uid] = f"series {series.label()}: {problem}"
        else:
            ranked.append((_rank(series), uid))
    if not ranked:
        details = "; ".join(rejected.values())
        raise NoSuitableSeriesError(f"no series in {scan.folder} can be processed: {details}", rejected)
    ranked.sort(reverse=True)
    candidates = tuple(uid for _, uid in ranked)
    chosen = candidates[0]
    for uid in candidates[1:]:
        rejected[uid] = f"series {scan.series[uid].label()}: qualifies, but ranked below the chosen series " \
                        f"({_rank_words(scan.series[uid])} vs {_rank_words(scan.series[chosen])})"
    warnings = []
    if len(scan.study_instance_uids) > 1:
        studies = len(scan.study_instance_uids)
        warnings.append(f"the folder holds {studies} studies; only one series is processed")
    logger.info("chose series %s (%s) of %d", scan.series[chosen].label(), _rank_words(scan.series[chosen]),
                len(scan.series))
    return SeriesSelection(chosen, rejected, candidates, tuple(warnings))


def series_problem(series: SeriesScan, min_slices: int = DEFAULT_MIN_SLICES,
                   max_tilt_degrees: float = DEFAULT_MAX_TILT_DEGREES) -> str | None:
    """Why a series cannot be processed, or None when it can."""
    if not series.uid:
        return "no SeriesInstanceUID"
    if series.sop_class_uid not in CT_IMAGE_CLASSES:
        return f"{UID(series.sop_class_uid).name or series.sop_class_uid} is not a CT image"
    if series.modality != "CT":
        return f"modality {series.modality or 'missing'}, not CT"
    if int(series.first.get("SamplesPerPixel", 1) or 1) != 1:
        return f"{series.first.SamplesPerPixel} samples per pixel (a colour image), not a CT slice"
    kinds = [_NOT_A_STACK[v] for v in image_type(series) if v in _NOT_A_STACK]
    if kinds:
        return f"{kinds[0]} (ImageType {'/'.join(image_type(series))})"
    problem = stack_problem(series)
    if problem:
        return str(problem)
    frames = all_frames(series)
    angle = axial_angle_degrees(frames[0].orientation)
    if angle > max_tilt_degrees:
        return (f"not axial: slice normal {angle:.1f} degrees from the patient's z axis "
                f"(limit {max_tilt_degrees:g})")
    count = distinct_positions(frames)
    if count < min_slices:
        return f"{count} slice positions, fewer than the {min_slices} needed"
    return None


def stack_problem(series: SeriesScan) -> GeometryError | None:
    """The geometry error of a series whose slices do not form one volume, or None."""
    frames = all_frames(series)
    try:
        check_consistent(frames)
    except GeometryError as exc:
        return exc
    if distinct_positions(frames) < 2:
        return GeometryError("one slice position only: a volume needs at least two slices")
    return None


def all_frames(series: SeriesScan) -> list[Frame]:
    return [frame for instance in series.instances for frame in frames_of(instance)]


def distinct_positions(frames: list[Frame]) -> int:
    _, offsets = sorted_by_position(frames)
    return int(1 + np.count_nonzero(np.diff(offsets) > _SAME_POSITION_MM))


def image_type(series: SeriesScan) -> list[str]:
    value = series.first.get("ImageType")
    values = [value] if isinstance(value, str) else list(value or [])
    return [str(v).strip().upper() for v in values]


def kernel(series: SeriesScan) -> str:
    header = series.first
    value = header.get("ConvolutionKernel")
    if value is None:
        reconstruction = functional_group(header, 0, "CTReconstructionSequence")
        value = reconstruction.get("ConvolutionKernel") if reconstruction else None
    if value is None:
        return ""
    # Multi-valued on some scanners (e.g. Siemens "Hr38" "3"): the first value names the kernel.
    return str(value[0] if not isinstance(value, str) else value)


def _rank(series: SeriesScan) -> tuple:
    types = image_type(series)
    primary = int(types[:2] == ["ORIGINAL", "PRIMARY"])
    number = series.series_number
    return (int(classify_kernel(kernel(series))), primary, distinct_positions(all_frames(series)),
            -(number if number is not None else 10**9))


def _rank_words(series: SeriesScan) -> str:
    types = image_type(series)
    origin = "original" if types[:2] == ["ORIGINAL", "PRIMARY"] else "derived"
    name = kernel(series) or "no kernel"
    return (f"{origin}, kernel {name} ({KernelClass(classify_kernel(name)).name.lower()}), "
            f"{distinct_positions(all_frames(series))} slices")
