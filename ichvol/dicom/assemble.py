"""Build a CTImage from the frames of one series: sort along the normal, drop identical duplicates,
report gaps, rescale to Hounsfield units, keep tilt and uneven spacing in the geometry."""

from __future__ import annotations

import logging

import numpy as np

from ..errors import GeometryError
from ..geometry import VolumeGeometry
from ..image import CTImage
from .frames import Frame
from .pixels import padding_mask, stored_values
from .scan import SeriesScan
from .selection import all_frames
from .stack import check_consistent, sorted_by_position

logger = logging.getLogger(__name__)

SAME_POSITION_MM = 0.01
GAP_FACTOR = 1.5  # a gap this many times the median gap suggests missing slices
_INT16 = np.iinfo(np.int16)
AIR_HU = -1024  # what padding (outside the field of view) becomes


def assemble_series(series: SeriesScan) -> tuple[CTImage, list[str]]:
    """The series as a CTImage in slice order, and warnings (dropped duplicates, gaps)."""
    frames = all_frames(series)
    check_consistent(frames)
    frames, offsets = sorted_by_position(frames)
    multi_frame = any(f.number is not None for f in frames)
    if multi_frame and len(series.instances) > 1:
        raise GeometryError(
            f"series {series.label()} holds {len(series.instances)} multi-frame instances; one is supported"
        )
    values = _frame_values(frames)
    hu = [_rescaled(v, f) for v, f in zip(values, frames, strict=True)]
    keep, warnings = _drop_duplicates(frames, offsets, hu)
    if len(keep) < 2:
        raise GeometryError(f"series {series.label()}: one slice position only; a volume needs at least two")
    frames = [frames[i] for i in keep]
    offsets = offsets[keep]
    warnings += _gap_warnings(offsets)
    first = frames[0]
    geometry = VolumeGeometry(
        positions=np.array([f.position for f in frames]),
        row_cosine=first.orientation[:3].copy(),
        col_cosine=first.orientation[3:].copy(),
        pixel_spacing=first.pixel_spacing,
        rows=first.rows,
        columns=first.columns,
    )
    volume = _stack([hu[i] for i in keep])
    if multi_frame:
        image = CTImage(volume, geometry, (series.instances[0].header,), tuple(int(f.number) for f in frames))
    else:
        image = CTImage(volume, geometry, tuple(f.instance.header for f in frames))
    for warning in warnings:
        logger.warning("series %s: %s", series.label(), warning)
    return image, warnings


def _frame_values(frames: list[Frame]) -> list[np.ndarray]:
    """Stored values of each frame; a multi-frame instance is decoded once."""
    decoded: dict[int, np.ndarray] = {}
    result = []
    for frame in frames:
        key = id(frame.instance)
        if key not in decoded:
            decoded[key] = stored_values(frame.instance)
        stack = decoded[key]
        index = (frame.number or 1) - 1
        if index >= len(stack) or stack.shape[1:] != (frame.rows, frame.columns):
            raise GeometryError(f"{frame.name()}: pixel data of shape {stack.shape} does not fit the header")
        result.append(stack[index])
    return result


def _rescaled(values: np.ndarray, frame: Frame) -> np.ndarray:
    """Hounsfield units: exact integers when slope and intercept are whole numbers, float otherwise. Padding
    pixels read as air: rescaled, a padding value can land anywhere, even in the range of blood."""
    if float(frame.slope).is_integer() and float(frame.intercept).is_integer():
        hu = values.astype(np.int32) * int(frame.slope) + int(frame.intercept)
    else:
        hu = (values.astype(np.float64) * frame.slope + frame.intercept).astype(np.float32)
    padding = padding_mask(values, frame.instance.header)
    if padding is not None:
        hu[padding] = AIR_HU
    if hu.dtype == np.int32 and _INT16.min <= hu.min() and hu.max() <= _INT16.max:
        return hu.astype(np.int16)
    return hu


def _stack(slices: list[np.ndarray]) -> np.ndarray:
    volume = np.stack(slices)
    if volume.dtype.kind == "i" and volume.min() >= _INT16.min and volume.max() <= _INT16.max:
        return volume.astype(np.int16)
    return volume.astype(np.float32)


def _drop_duplicates(
    frames: list[Frame], offsets: np.ndarray, hu: list[np.ndarray]
) -> tuple[list[int], list[str]]:
    """Indices to keep: of slices at the same position, one is kept when their pixels are identical."""
    keep = [0]
    warnings = []
    for i in range(1, len(frames)):
        kept = keep[-1]
        same_place = offsets[i] - offsets[kept] <= SAME_POSITION_MM and \
            np.allclose(frames[i].position, frames[kept].position, atol=SAME_POSITION_MM)
        if not same_place:
            keep.append(i)
        elif np.array_equal(hu[i], hu[kept]):
            warnings.append(
                f"{frames[i].name()} duplicates {frames[kept].name()} (same position and pixels); dropped"
            )
        else:
            raise GeometryError(
                f"{frames[i].name()} and {frames[kept].name()} are at the same position "
                f"{[round(float(v), 3) for v in frames[i].position]} with different pixels: "
                "two acquisitions mixed in one series?"
            )
    return keep, warnings


def _gap_warnings(offsets: np.ndarray) -> list[str]:
    gaps = np.diff(offsets)
    if gaps.size < 2:
        return []
    median = float(np.median(gaps))
    large = np.flatnonzero(gaps > GAP_FACTOR * median)
    if large.size == 0:
        return []
    widest = int(large[np.argmax(gaps[large])])
    return [
        f"{large.size} gap(s) wider than {GAP_FACTOR:g} x the median {median:.2f} mm, the widest "
        f"{gaps[widest]:.2f} mm between slices {widest} and {widest + 1}: missing slices or a change of "
        "spacing (volumes use the real positions)"
    ]
