"""Voxel coordinates of a (possibly tilted) CT grid in the head's own frame, on a coarse in-plane grid.

Smooth anatomy and lesion fields are evaluated on the coarse grid (every `down`-th pixel in-plane, all
slices) and upsampled bilinearly to the full matrix before thresholding: sharp edges at full resolution for
a fraction of the cost. Small structures are evaluated only inside their bounding box (a `Box`). Head frame
axes (mm): x to the patient's left, y posterior, z superior, origin at the head centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..geometry import VolumeGeometry

Box = tuple[slice, slice, slice]


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation (degrees) about z (yaw), then x (pitch), then y (roll)."""
    cy, sy = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
    cp, sp = np.cos(np.radians(pitch)), np.sin(np.radians(pitch))
    cr, sr = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cr, 0, sr], [0, 1, 0], [-sr, 0, cr]])
    return rz @ rx @ ry


@dataclass(eq=False)
class Crop:
    """Full-resolution values inside a box of the volume (zero / False outside)."""

    box: Box
    data: np.ndarray

    def full(self, shape) -> np.ndarray:
        out = np.zeros(shape, dtype=self.data.dtype)
        out[self.box] = self.data
        return out


def _bilinear_taps(n_full: int, d: int):
    s = (np.arange(n_full) + 0.5) / d - 0.5
    i0 = np.floor(s).astype(np.int64)
    w = (s - i0).astype(np.float32)
    n_coarse = n_full // d
    return np.clip(i0, 0, n_coarse - 1), np.clip(i0 + 1, 0, n_coarse - 1), w


@dataclass(eq=False)
class HeadGrid:
    geometry: VolumeGeometry
    head_center: np.ndarray  # LPS mm
    rotation: np.ndarray  # head frame -> patient (3x3)
    down: int  # in-plane subsampling of the coarse grid

    def __post_init__(self) -> None:
        g = self.geometry
        n, rows, cols = g.shape
        d = self.down
        self.coarse_shape = (n, rows // d, cols // d)
        rt = self.rotation.T
        du_full = rt @ (g.row_cosine * g.pixel_spacing[1])  # per full column
        dv_full = rt @ (g.col_cosine * g.pixel_spacing[0])  # per full row
        # Coarse sample (il, jl) sits at the centre of its d x d block.
        self._base = (g.positions - self.head_center) @ rt.T + (d - 1) / 2.0 * (du_full + dv_full)
        self._du, self._dv = du_full * d, dv_full * d
        il = np.arange(self.coarse_shape[1], dtype=np.float64)
        jl = np.arange(self.coarse_shape[2], dtype=np.float64)
        coords = []
        for axis in range(3):
            c = (self._base[:, axis, None, None] + il[None, :, None] * self._dv[axis]
                 + jl[None, None, :] * self._du[axis])
            coords.append(c.astype(np.float32))
        self.x, self.y, self.z = coords
        self._row_taps = _bilinear_taps(rows, d)
        self._col_taps = _bilinear_taps(cols, d)
        # Patient y (posterior) of every full-resolution row: gravity pulls blood towards +y when supine.
        py = g.positions[:, 1, None] + np.arange(rows)[None, :] * g.col_cosine[1] * g.pixel_spacing[0]
        self.patient_y = py.astype(np.float32)[:, :, None]  # (n, rows, 1)

    @property
    def full_shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    # -- boxes -------------------------------------------------------------------------------------------
    def everything(self) -> Box:
        return (slice(0, self.coarse_shape[0]), slice(0, self.coarse_shape[1]), slice(0, self.coarse_shape[2]))

    def sphere_box(self, center, radius: float) -> Box | None:
        """Coarse box holding every sample within `radius` mm of `center` (head frame), or None."""
        normal = np.cross(self._du, self._dv)
        normal /= np.linalg.norm(normal)
        rel = np.asarray(center, float)[None, :] - self._base
        dist = rel @ normal
        hit = np.abs(dist) < radius
        if not hit.any():
            return None
        rho = np.sqrt(radius**2 - dist[hit] ** 2)
        ic = rel[hit] @ self._dv / (self._dv @ self._dv)
        jc = rel[hit] @ self._du / (self._du @ self._du)
        ri, rj = rho / np.linalg.norm(self._dv), rho / np.linalg.norm(self._du)
        _, nr, nc = self.coarse_shape
        i0, i1 = int(np.clip(np.floor((ic - ri).min()) - 1, 0, nr)), int(np.clip(np.ceil((ic + ri).max()) + 2, 0, nr))
        j0, j1 = int(np.clip(np.floor((jc - rj).min()) - 1, 0, nc)), int(np.clip(np.ceil((jc + rj).max()) + 2, 0, nc))
        k = np.nonzero(hit)[0]
        if i1 <= i0 or j1 <= j0:
            return None
        return (slice(int(k.min()), int(k.max()) + 1), slice(i0, i1), slice(j0, j1))

    @staticmethod
    def where_box(condition: np.ndarray, offset: Box | None = None) -> Box | None:
        """Coarse box around the True samples of `condition` (grown by one sample in-plane)."""
        if not condition.any():
            return None
        out = []
        for axis, margin in zip(range(3), (0, 1, 1), strict=True):
            others = tuple(a for a in range(3) if a != axis)
            idx = np.nonzero(condition.any(axis=others))[0]
            lo = max(int(idx.min()) - margin, 0)
            hi = min(int(idx.max()) + 1 + margin, condition.shape[axis])
            start = offset[axis].start if offset else 0
            out.append(slice(start + lo, start + hi))
        return tuple(out)

    def full_box(self, box: Box) -> Box:
        d = self.down
        return (box[0], slice(box[1].start * d, box[1].stop * d), slice(box[2].start * d, box[2].stop * d))

    def coarse_box(self, full_box: Box) -> Box:
        d = self.down
        return (full_box[0], slice(full_box[1].start // d, full_box[1].stop // d),
                slice(full_box[2].start // d, full_box[2].stop // d))

    # -- fields ------------------------------------------------------------------------------------------
    def coords(self, box: Box | None = None):
        box = box or self.everything()
        return self.x[box], self.y[box], self.z[box]

    def up(self, field: np.ndarray) -> np.ndarray:
        """Bilinear upsampling of a whole coarse field to the full matrix (float32)."""
        if self.down == 1:
            return np.ascontiguousarray(field, dtype=np.float32)
        _, rows, cols = self.full_shape
        t = torch.from_numpy(np.ascontiguousarray(field, dtype=np.float32))[None]
        out = torch.nn.functional.interpolate(t, size=(rows, cols), mode="bilinear", align_corners=False)
        return out[0].numpy()

    def up_box(self, values: np.ndarray, box: Box) -> Crop:
        """Bilinear upsampling of coarse `values` that fill `box`, as a full-resolution crop."""
        fbox = self.full_box(box)
        if self.down == 1:
            return Crop(fbox, np.ascontiguousarray(values, dtype=np.float32))
        r0, r1, rw = (t[fbox[1]] for t in self._row_taps)
        c0, c1, cw = (t[fbox[2]] for t in self._col_taps)
        lo_r, hi_r = box[1].start, box[1].stop - 1
        lo_c, hi_c = box[2].start, box[2].stop - 1
        r0, r1 = np.clip(r0, lo_r, hi_r) - lo_r, np.clip(r1, lo_r, hi_r) - lo_r
        c0, c1 = np.clip(c0, lo_c, hi_c) - lo_c, np.clip(c1, lo_c, hi_c) - lo_c
        v = values.astype(np.float32, copy=False)
        rows = v[:, r0, :] * (1 - rw)[None, :, None] + v[:, r1, :] * rw[None, :, None]
        return Crop(fbox, rows[:, :, c0] * (1 - cw) + rows[:, :, c1] * cw)

    def ellipsoid(self, center, semi, rotation: np.ndarray | None = None, box: Box | None = None) -> np.ndarray:
        """Normalised radius of an ellipsoid on the coarse grid (< 1 inside), within `box`."""
        x, y, z = self.coords(box)
        dx, dy, dz = x - np.float32(center[0]), y - np.float32(center[1]), z - np.float32(center[2])
        if rotation is not None:
            r = rotation.T.astype(np.float32)
            dx, dy, dz = (r[0, 0] * dx + r[0, 1] * dy + r[0, 2] * dz,
                          r[1, 0] * dx + r[1, 1] * dy + r[1, 2] * dz,
                          r[2, 0] * dx + r[2, 1] * dy + r[2, 2] * dz)
        return np.sqrt((dx / np.float32(semi[0])) ** 2 + (dy / np.float32(semi[1])) ** 2
                       + (dz / np.float32(semi[2])) ** 2)

    def ellipsoid_mask(self, center, semi, rotation: np.ndarray | None = None) -> Crop | None:
        """Full-resolution mask (as a crop) of an ellipsoid, evaluated only in its bounding box."""
        box = self.sphere_box(center, float(max(semi)) + 2 * float(np.linalg.norm(self._du)))
        if box is None:
            return None
        crop = self.up_box(self.ellipsoid(center, semi, rotation, box), box)
        return Crop(crop.box, crop.data < 1)

    def smooth_noise(self, rng: np.random.Generator, sigma_mm: float) -> np.ndarray:
        """Gaussian-correlated noise with unit standard deviation on the coarse grid."""
        g = self.geometry
        field = rng.standard_normal(self.coarse_shape, dtype=np.float32)
        spacing_z = max(g.slice_spacing, 0.5) if self.coarse_shape[0] > 1 else 1.0
        sigma = (sigma_mm / spacing_z, sigma_mm / (g.pixel_spacing[0] * self.down),
                 sigma_mm / (g.pixel_spacing[1] * self.down))
        field = gaussian_filter(field, sigma=sigma, mode="reflect", truncate=3.0)
        std = float(field.std())
        return field / std if std > 0 else field
