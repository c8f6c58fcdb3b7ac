"""Checks that a set of frames forms one stack of parallel slices, and their order along the normal."""

from __future__ import annotations

import numpy as np

from ..errors import GeometryError
from .frames import Frame

ORIENTATION_TOLERANCE = 1e-3  # largest difference between direction cosines still called the same
SPACING_TOLERANCE = 1e-3  # relative difference of pixel spacing still called the same


def check_consistent(frames: list[Frame]) -> None:
    """Raise GeometryError unless every frame has a position, the same orientation, size and pixel spacing."""
    missing = [f.name() for f in frames
               if f.position is None or f.orientation is None or f.pixel_spacing is None]
    if missing:
        raise GeometryError(
            f"{len(missing)} slice(s) lack ImagePositionPatient, ImageOrientationPatient or PixelSpacing "
            f"(e.g. {missing[0]})"
        )
    first = frames[0]
    orientations = np.array([f.orientation for f in frames])
    odd = np.abs(orientations - first.orientation).max(axis=1) > ORIENTATION_TOLERANCE
    if odd.any():
        distinct = {tuple(np.round(o, 3)) for o in orientations}
        raise GeometryError(
            f"mixed orientations: {len(distinct)} different ImageOrientationPatient values "
            f"(e.g. {frames[0].name()} and {frames[int(np.argmax(odd))].name()})"
        )
    sizes = {(f.rows, f.columns) for f in frames}
    if len(sizes) > 1:
        raise GeometryError(f"slices of different sizes (rows x columns): {sorted(sizes)}")
    spacings = np.array([f.pixel_spacing for f in frames])
    if np.abs(spacings / spacings[0] - 1).max() > SPACING_TOLERANCE:
        raise GeometryError(f"slices with different pixel spacing: {sorted({tuple(s) for s in spacings})}")


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    normal = np.cross(orientation[:3], orientation[3:])
    length = np.linalg.norm(normal)
    if length < 1e-6:
        raise GeometryError(f"ImageOrientationPatient {list(orientation)}: parallel row and column cosines")
    return normal / length


def axial_angle_degrees(orientation: np.ndarray) -> float:
    """Angle between the slice normal and the patient's head-foot (z) axis."""
    return float(np.degrees(np.arccos(min(1.0, abs(slice_normal(orientation)[2])))))


def sorted_by_position(frames: list[Frame]) -> tuple[list[Frame], np.ndarray]:
    """Frames sorted by their offset along the slice normal (never by InstanceNumber), and the offsets."""
    normal = slice_normal(frames[0].orientation)
    offsets = np.array([f.position @ normal for f in frames])
    order = np.argsort(offsets, kind="stable")
    return [frames[i] for i in order], offsets[order]
