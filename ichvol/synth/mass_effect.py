"""Mass effect: a large bleed pushes the brain aside (midline shift, compressed ventricles).

The brain is displaced in-plane away from each large bleed (its equivalent sphere stays in place), damped to
zero at the inner table so that the skull does not move. The
same warp is applied to the image, the labels and the tissue masks, so they stay consistent.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .grid import HeadGrid
from .lesions import Bleed

MIN_VOLUME_ML = 15.0
MIN_SHIFT_PX = 0.3


def displacement(grid: HeadGrid, anatomy: Anatomy, bleeds: list[Bleed], rng: np.random.Generator):
    """Full-resolution (rows, columns) pixel displacement fields, or None when no bleed is large enough."""
    g = grid.geometry
    voxel_ml = g.voxel_volumes_ml()
    d = grid.down
    total = np.zeros((3, *grid.coarse_shape), dtype=np.float32)
    for bleed in bleeds:
        mask = bleed.weight.data >= 0.5
        box = bleed.weight.box
        volume = float(mask.sum(axis=(1, 2)) @ voxel_ml[box[0]])
        if volume < MIN_VOLUME_ML:
            continue
        k, i, j = (np.argwhere(mask).mean(axis=0) + [box[0].start, box[1].start, box[2].start]).round().astype(int)
        ci, cj = min(i // d, grid.coarse_shape[1] - 1), min(j // d, grid.coarse_shape[2] - 1)
        center = np.array([grid.x[k, ci, cj], grid.y[k, ci, cj], grid.z[k, ci, cj]], dtype=np.float32)
        radius = (3000.0 * volume / (4 * np.pi)) ** (1 / 3)
        # The bleed keeps its place and size; the tissue around it is compressed in a band of width
        # `band` and pushed out by up to `push` mm, decaying as 1/r^2 (atrophic brains have room to spare).
        push = radius * float(rng.uniform(0.3, 0.6)) * (1.0 - 0.4 * anatomy.params.atrophy)
        band = 1.5 * push + 2.0
        rel = np.stack([grid.x - center[0], grid.y - center[1], grid.z - center[2]])
        r = np.maximum(np.sqrt((rel**2).sum(axis=0)), 1e-3)
        magnitude = np.where(r <= radius, 0.0,
                             np.where(r < radius + band, push * (r - radius) / band,
                                      push * ((radius + band) / r) ** 2)).astype(np.float32)
        total += rel / r * magnitude
    if not total.any():
        return None
    total *= np.clip(anatomy.inner_depth / 20.0, 0, 1)[None]
    # Head-frame vector -> full-resolution pixel steps along rows and columns.
    row_step, col_step = grid._dv / d, grid._du / d
    di = np.tensordot(row_step / (row_step @ row_step), total, axes=1)
    dj = np.tensordot(col_step / (col_step @ col_step), total, axes=1)
    if max(float(np.abs(di).max()), float(np.abs(dj).max())) < MIN_SHIFT_PX:
        return None
    return grid.up(di), grid.up(dj)


class Warp:
    """Pull-back warp: value at (k, i, j) comes from (k, i - di, j - dj)."""

    def __init__(self, di: np.ndarray, dj: np.ndarray):
        n, rows, cols = di.shape
        self.k = np.arange(n)[:, None, None]
        si = np.arange(rows, dtype=np.float32)[None, :, None] - di
        sj = np.arange(cols, dtype=np.float32)[None, None, :] - dj
        self.i0 = np.clip(np.floor(si).astype(np.int32), 0, rows - 2)
        self.j0 = np.clip(np.floor(sj).astype(np.int32), 0, cols - 2)
        self.wi = np.clip(si - self.i0, 0, 1).astype(np.float32)
        self.wj = np.clip(sj - self.j0, 0, 1).astype(np.float32)
        self.ni = np.clip(np.rint(si).astype(np.int32), 0, rows - 1)
        self.nj = np.clip(np.rint(sj).astype(np.int32), 0, cols - 1)

    def linear(self, a: np.ndarray) -> np.ndarray:
        k, i0, j0, wi, wj = self.k, self.i0, self.j0, self.wi, self.wj
        top = a[k, i0, j0] * (1 - wj) + a[k, i0, j0 + 1] * wj
        bottom = a[k, i0 + 1, j0] * (1 - wj) + a[k, i0 + 1, j0 + 1] * wj
        return (top * (1 - wi) + bottom * wi).astype(a.dtype)

    def nearest(self, a: np.ndarray) -> np.ndarray:
        return a[self.k, self.ni, self.nj]
