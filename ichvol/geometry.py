"""Geometry of a stack of parallel CT slices, in DICOM patient coordinates (LPS, mm).

Arrays are indexed (slice, row, column) = (z, y, x). Slices are ordered by their position along the slice
normal. Gantry tilt shows up as a slice-to-slice step that is not parallel to the normal (a sheared grid);
irregular gaps as unequal steps. Neither changes the volume a voxel stands for: pixel area times the distance
between neighbouring slices measured along the normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GeometryError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True, eq=False)
class VolumeGeometry:
    positions: np.ndarray  # (n, 3) ImagePositionPatient of each slice, sorted along the normal
    row_cosine: np.ndarray  # (3,) direction of increasing column index (ImageOrientationPatient[0:3])
    col_cosine: np.ndarray  # (3,) direction of increasing row index (ImageOrientationPatient[3:6])
    pixel_spacing: tuple[float, float]  # (between rows, between columns) as in DICOM PixelSpacing
    rows: int
    columns: int

    def __post_init__(self) -> None:
        if self.positions.ndim != 2 or self.positions.shape[1] != 3 or len(self.positions) < 1:
            raise GeometryError("slice positions must be an (n, 3) array with at least one slice")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.positions), self.rows, self.columns)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.row_cosine, self.col_cosine)
        return n / np.linalg.norm(n)

    def slice_offsets(self) -> np.ndarray:
        """Position of each slice along the normal, in mm."""
        return self.positions @ self.normal

    def slice_gaps(self) -> np.ndarray:
        """Distances along the normal between consecutive slices (n - 1 values)."""
        return np.diff(self.slice_offsets())

    @property
    def slice_spacing(self) -> float:
        """Mean distance between consecutive slices along the normal (mm)."""
        gaps = self.slice_gaps()
        return float(gaps.mean()) if gaps.size else 0.0

    def slice_thicknesses(self) -> np.ndarray:
        """The slab each slice stands for along the normal (mm): half the gap to each neighbour, an end
        slice taking its one gap in full. For evenly spaced slices every value is the spacing."""
        gaps = self.slice_gaps()
        if gaps.size == 0:
            raise GeometryError("one slice has no thickness along the normal: a volume needs two or more slices")
        padded = np.concatenate([[gaps[0]], gaps, [gaps[-1]]])
        return (padded[:-1] + padded[1:]) / 2.0

    def voxel_volumes_ml(self) -> np.ndarray:
        """Volume of one voxel of each slice in ml (1 ml = 1000 mm^3)."""
        area = self.pixel_spacing[0] * self.pixel_spacing[1]
        return area * self.slice_thicknesses() / 1000.0

    def is_regular(self, tolerance_mm: float = 0.01) -> bool:
        gaps = self.slice_gaps()
        return bool(gaps.size == 0 or np.ptp(gaps) <= tolerance_mm)

    @property
    def tilt_degrees(self) -> float:
        """Angle between the slice normal and the slice-to-slice step (0 for an untilted stack)."""
        if len(self.positions) < 2:
            return 0.0
        step = self.positions[-1] - self.positions[0]
        cos = abs(float(step @ self.normal)) / float(np.linalg.norm(step))
        return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))

    def affine(self) -> np.ndarray:
        """4x4 matrix from (column, row, slice) indices to LPS mm, with the mean slice step (shear for tilt)."""
        step = (
            (self.positions[-1] - self.positions[0]) / (len(self.positions) - 1)
            if len(self.positions) > 1
            else self.normal
        )
        a = np.eye(4)
        a[:3, 0] = self.row_cosine * self.pixel_spacing[1]
        a[:3, 1] = self.col_cosine * self.pixel_spacing[0]
        a[:3, 2] = step
        a[:3, 3] = self.positions[0]
        return a

    def nifti_affine(self) -> np.ndarray:
        """The affine in NIfTI's RAS convention, for data stored as (column, row, slice)."""
        return LPS_TO_RAS @ self.affine()

    @classmethod
    def from_nifti_affine(cls, affine: np.ndarray, shape_xyz: tuple[int, int, int]) -> VolumeGeometry:
        """Rebuild an evenly spaced geometry from a NIfTI (RAS) affine and the stored (x, y, z) shape."""
        lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
        col_step, row_step, slice_step, origin = lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3]
        dx, dy = float(np.linalg.norm(col_step)), float(np.linalg.norm(row_step))
        nx, ny, nz = shape_xyz
        positions = origin[None, :] + np.arange(nz)[:, None] * slice_step[None, :]
        geometry = cls(positions, col_step / dx, row_step / dy, (dy, dx), ny, nx)
        if geometry.slice_spacing < 0:  # stored with slices running against the normal
            raise GeometryError("NIfTI slices run against the in-plane normal; flip the slice axis first")
        return geometry

    def with_slices(self, indices: np.ndarray) -> VolumeGeometry:
        """The geometry of a subset of slices (kept in the given order)."""
        return VolumeGeometry(self.positions[indices], self.row_cosine, self.col_cosine,
                              self.pixel_spacing, self.rows, self.columns)

    def describe(self) -> dict:
        """A JSON-ready summary."""
        return {
            "shape_zyx": list(self.shape),
            "pixel_spacing_mm": [float(s) for s in self.pixel_spacing],
            "slice_spacing_mm": round(self.slice_spacing, 4),
            "slice_gaps_mm": [round(float(g), 4) for g in self.slice_gaps()],
            "tilt_degrees": round(self.tilt_degrees, 3),
            "image_orientation_patient": [float(v) for v in (*self.row_cosine, *self.col_cosine)],
            "first_position_mm": [float(v) for v in self.positions[0]],
        }
