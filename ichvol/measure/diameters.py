"""In-plane diameters of a 2D lesion: the greatest diameter (A) and the extent perpendicular to it (B).

A lesion on a slice is the union of its pixel squares. Its greatest diameter is the largest distance between
two corners of those squares, found on their convex hull; B is the extent of the same corners along the
direction perpendicular to A. Measured on pixel corners rather than centres, a single pixel has A = B = its
diagonal and A * B / 2 = its area, so tiny lesions get sensible, never zero, numbers.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

# Offsets of the four corners of a pixel from its centre, in pixel units (row, column).
_CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
_SMALL = 16  # masks up to this many pixels skip the outline and hull steps (cheaper to measure directly)


def outline_corners_mm(mask: np.ndarray, pixel_spacing: tuple[float, float]) -> np.ndarray:
    """Corners of the boundary pixels of a 2D mask, as (n, 2) points in mm (row axis, column axis)."""
    boundary = mask if mask.size <= _SMALL else mask & ~ndimage.binary_erosion(mask)
    centres = np.argwhere(boundary).astype(float)
    corners = (centres[:, None, :] + _CORNERS[None, :, :]).reshape(-1, 2)
    return corners * np.asarray(pixel_spacing, dtype=float)


def greatest_diameters(mask: np.ndarray, pixel_spacing: tuple[float, float]) -> tuple[float, float]:
    """(A, B) in mm of a non-empty 2D mask: the greatest diameter and the extent perpendicular to it."""
    points = outline_corners_mm(mask, pixel_spacing)
    hull = points if len(points) <= 4 * _SMALL else points[ConvexHull(points).vertices]
    differences = hull[:, None, :] - hull[None, :, :]
    distances = np.hypot(differences[..., 0], differences[..., 1])
    i, j = np.unravel_index(int(np.argmax(distances)), distances.shape)
    a_mm = float(distances[i, j])
    direction = differences[i, j] / a_mm
    perpendicular = np.array([-direction[1], direction[0]])
    b_mm = float(np.ptp(hull @ perpendicular))
    return a_mm, b_mm
