"""Pick the series of a study to process, with a readable reason for every series left out.

Series descriptions are unreliable, so the choice rests on SOP class, modality, image type, geometry,
kernel and slice count. A series qualifies when it is a CT image stack (classic or enhanced), not a
localizer or projection, axial within `max_tilt_degrees` (so tilted gantry series pass) and has at least
`min_slices` slice positions. Among those that qualify: soft-tissue kernel before unknown before bone/lung
(the kernel changes the image more than a reformat does), then ORIGINAL/PRIMARY before derived (axial
reformats), then more slices, then the lower series number.

A series that mixes stacks (two tilts, a localizer or a second reconstruction in one series) is split into
parts (ichvol.dicom.parts), and each part is a candidate of its own, keyed "UID#n".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from pydicom.uid import UID

from ..errors import GeometryError, NoSuitableSeriesError
from .frames import Frame, frames_of
from .kernels import KernelClass, classify_kernel, kernel_name
from .parts import NOT_A_STACK, SAME_POSITION_MM, header_image_type, series_parts
from .scan import SeriesScan, StudyScan
from .stack import axial_angle_degrees, check_consistent, sorted_by_position

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
CT_IMAGE_CLASSES = {CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE}

DEFAULT_MIN_SLICES = 8
DEFAULT_MAX_TILT_DEGREES = 30.0


@dataclass(frozen=True)
class SeriesSelection:
    """The chosen series, every other one with the reason it was not chosen, and warnings about the choice.

    `candidates` lists the series that qualified, best first (the chosen one first); `series` is the chosen
    series itself (or the chosen part of a series that mixes stacks).
    """

    chosen: str
    series: SeriesScan = field(compare=False, repr=False)
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
    stacks = series_parts(scan)
    for key, series in stacks.items():
        problem = series_problem(series, min_slices, max_tilt_degrees)
        if problem:
            rejected[key] = f"series {series.label()}: {problem}"
        else:
            ranked.append((_rank(series), key))
    if not ranked:
        details = "; ".join(rejected.values())
        raise NoSuitableSeriesError(f"no series in {scan.folder} can be processed: {details}", rejected)
    ranked.sort(reverse=True)
    candidates = tuple(uid for _, uid in ranked)
    chosen = candidates[0]
    for key in candidates[1:]:
        rejected[key] = f"series {stacks[key].label()}: qualifies, but ranked below the chosen series " \
                        f"({_rank_words(stacks[key])} vs {_rank_words(stacks[chosen])})"
    warnings = []
    if stacks[chosen].parts > 1:
        warnings.append(f"series {stacks[chosen].label()} is one of {stacks[chosen].parts} stacks mixed in one "
                        "series; only this stack is processed (the others are listed with the reason)")
    if len(scan.study_instance_uids) > 1:
        studies = len(scan.study_instance_uids)
        warnings.append(f"the folder holds {studies} studies; only one series is processed")
    logger.info("chose series %s (%s) of %d", stacks[chosen].label(), _rank_words(stacks[chosen]), len(stacks))
    return SeriesSelection(chosen, stacks[chosen], rejected, candidates, tuple(warnings))


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
    kinds = [NOT_A_STACK[v] for v in image_type(series) if v in NOT_A_STACK]
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
    return int(1 + np.count_nonzero(np.diff(offsets) > SAME_POSITION_MM))


def image_type(series: SeriesScan) -> list[str]:
    return header_image_type(series.first)


def kernel(series: SeriesScan) -> str:
    return kernel_name(series.first)


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
