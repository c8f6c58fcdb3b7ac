"""Hemorrhage painters: each returns the soft weight (0..1, partial volume at the edge) of one bleed on
the full grid, already confined to where that type can lie.

IPH: irregular blob in the parenchyma (optionally extending into a ventricle); IVH: blood layering in the
dependent part of the ventricles, or a cast; SAH: blood in the sulci / cisterns of a region; SDH: crescent
along the inner table that follows the skull and stops at the falx; EDH: biconvex lens, short extent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from ..labels import Hemorrhage
from .anatomy import Anatomy
from .grid import Box, Crop, HeadGrid, rotation_matrix

EDGE_MM = 1.0  # width of the partial-volume ramp at a lesion's edge


@dataclass(eq=False)
class Bleed:
    type: Hemorrhage
    weight: Crop  # float32 0..1 at full resolution inside its box
    density_hu: float
    edema_mm: float = 0.0
    signed_distance: Crop | None = None  # mm inside the lesion surface (IPH, for the edema ring)

    def voxels(self) -> int:
        return int((self.weight.data >= 0.5).sum())


def _ramp(signed_mm: np.ndarray) -> np.ndarray:
    return np.clip(signed_mm / EDGE_MM + 0.5, 0.0, 1.0).astype(np.float32)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    return rotation_matrix(*rng.uniform(-180, 180, size=3))


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _box_noise(grid: HeadGrid, rng: np.random.Generator, box: Box, sigma_mm: float) -> np.ndarray:
    shape = tuple(s.stop - s.start for s in box)
    field = rng.standard_normal(shape, dtype=np.float32)
    g = grid.geometry
    sz = max(g.slice_spacing, 0.5) if g.shape[0] > 1 else 1.0
    field = gaussian_filter(field, (sigma_mm / sz, sigma_mm / (g.pixel_spacing[0] * grid.down),
                                    sigma_mm / (g.pixel_spacing[1] * grid.down)), mode="reflect")
    std = float(field.std())
    return field / std if std > 0 else field


def sample_volume_ml(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def iph_center(rng: np.random.Generator, anatomy: Anatomy, near_ventricle: bool) -> np.ndarray:
    p = anatomy.params
    side = float(rng.choice([-1.0, 1.0]))
    if near_ventricle:
        choices = [(side * 12, 6, 8), (side * (8 + 5 * p.ventricle_scale), -12, 16), (side * 14, 22, 18)]
        return np.array(choices[int(rng.integers(len(choices)))], float) + rng.uniform(-3, 3, 3)
    kind = rng.choice(["putamen", "thalamus", "lobar", "cerebellum"], p=[0.3, 0.15, 0.45, 0.1])
    if kind == "putamen":
        return np.array([side * 24, -2, 5]) + rng.uniform(-4, 4, 3)
    if kind == "thalamus":
        return np.array([side * 11, 8, 6]) + rng.uniform(-3, 3, 3)
    if kind == "cerebellum":
        return np.array([side * 22, 0.5 * p.b, -0.5 * p.c]) + rng.uniform(-5, 5, 3)
    direction = _unit([side * rng.uniform(0.3, 1), rng.uniform(-1, 1), rng.uniform(-0.1, 0.9)])
    inner = np.array([p.a, p.b, p.c]) - p.scalp - p.skull - p.csf_rim
    return direction * inner * rng.uniform(0.45, 0.7)


def draw_iph(grid: HeadGrid, anatomy: Anatomy, rng: np.random.Generator, with_extension: bool) -> list[Bleed]:
    """A lobulated hematoma. Without ventricular extension it must not engulf a ventricle (a real one
    compresses it), so a placement that does is drawn again, smaller."""
    volume = sample_volume_ml(rng, 0.3, 110.0)
    for attempt in range(6):
        bleeds = _draw_iph_once(grid, anatomy, rng, with_extension, volume * 0.7**attempt)
        if with_extension or not bleeds:
            return bleeds
        iph = bleeds[0]
        in_ventricle = (iph.signed_distance.data > 0) & anatomy.all_ventricles[iph.weight.box]
        if in_ventricle.sum() <= 0.02 * max(iph.voxels(), 1):
            return bleeds
    return []


def _draw_iph_once(grid: HeadGrid, anatomy: Anatomy, rng: np.random.Generator, with_extension: bool,
                   volume: float) -> list[Bleed]:
    radius = (3000.0 * volume / (4 * np.pi)) ** (1 / 3)
    stretch = rng.uniform(0.7, 1.35, 3)
    semi = radius * stretch / np.prod(stretch) ** (1 / 3)
    center = iph_center(rng, anatomy, with_extension)
    rotation = _random_rotation(rng)
    density = float(rng.uniform(55, 85))
    edema = float(rng.uniform(1.0, 0.35 * radius + 2))
    box = grid.sphere_box(center, 1.3 * float(semi.max()) + edema + 2)
    if box is None:
        return []
    q = grid.ellipsoid(center, semi, rotation, box)
    q = q * (1 + 0.2 * _box_noise(grid, rng, box, max(2.0, radius / 3)))
    signed = grid.up_box((1 - q) * np.float32(radius), box)
    weight = _ramp(signed.data)
    # The core of a hematoma effaces the sulci it covers; its edge stays in the parenchyma.
    box = signed.box
    allowed = anatomy.brain[box] | (anatomy.csf_spaces[box] & (signed.data > 2.0))
    bleeds = [Bleed(Hemorrhage.IPH, Crop(box, weight * allowed), density, edema, signed)]
    if with_extension:
        bleeds.append(Bleed(Hemorrhage.IVH, Crop(box, weight * anatomy.all_ventricles[box]), density))
    return bleeds


def _merge(crops: list[Crop]) -> Crop:
    box = tuple(slice(min(c.box[a].start for c in crops), max(c.box[a].stop for c in crops)) for a in range(3))
    data = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
    for c in crops:
        data[tuple(slice(c.box[a].start - box[a].start, c.box[a].stop - box[a].start) for a in range(3))] |= c.data
    return Crop(box, data)


def draw_ivh(grid: HeadGrid, anatomy: Anatomy, rng: np.random.Generator) -> list[Bleed]:
    v = anatomy.ventricles
    lateral = [v[k] for k in ("left", "right") if k in v]
    if not lateral:
        return []
    one = lateral[int(rng.integers(len(lateral)))]
    if rng.random() < 0.6:  # layering in the dependent (posterior, supine) part of the lateral ventricles
        parts = lateral if rng.random() < 0.6 else [one]
        fill = rng.uniform(0.02, 0.5)
    else:  # a cast of one lateral ventricle with the third (and fourth)
        parts = [one] + [v[k] for k in ("third", "fourth") if k in v and (k == "third" or rng.random() < 0.5)]
        fill = rng.uniform(0.5, 1.0)
    region = _merge(parts)
    if not region.data.any():
        return []
    py = np.broadcast_to(grid.patient_y[region.box[0], region.box[1]], region.data.shape)
    level = float(np.quantile(py[region.data], 1.0 - fill))
    weight = _ramp(py - np.float32(level)) * region.data
    return [Bleed(Hemorrhage.IVH, Crop(region.box, weight), float(rng.uniform(50, 80)))]


def draw_sah(grid: HeadGrid, anatomy: Anatomy, rng: np.random.Generator) -> list[Bleed]:
    p = anatomy.params
    if rng.random() < 0.45:  # convexity SAH: sulci and rim of one region
        direction = _unit([rng.choice([-1, 1]) * rng.uniform(0.3, 1), rng.uniform(-1, 1), rng.uniform(0.1, 1)])
        inner = np.array([p.a, p.b, p.c]) - p.scalp - p.skull
        region = grid.ellipsoid_mask(direction * inner * 0.9, (rng.uniform(8, 45),) * 3)
        allowed = anatomy.csf_spaces
    else:  # basal (aneurysmal) pattern: cisterns, Sylvian fissures and nearby sulci
        radius = rng.uniform(35, 65)
        region = grid.ellipsoid_mask((0.0, -5.0, -12.0), (radius, radius, radius * 0.6))
        allowed = anatomy.csf_spaces if rng.random() < 0.7 else anatomy.cisterns
    if region is None:
        return []
    weight = (region.data & allowed[region.box]).astype(np.float32)
    return [Bleed(Hemorrhage.SAH, Crop(region.box, weight), float(rng.uniform(50, 75)))]


def _extra_axial(grid: HeadGrid, anatomy: Anatomy, direction: np.ndarray, thickness) -> Crop | None:
    """Signed distance (mm) inside a collection hugging the inner table, its thickness a function of the
    angle from `direction`."""
    x, y, z = grid.x, grid.y, grid.z
    cos = (x * direction[0] + y * direction[1] + z * direction[2]) / np.maximum(np.sqrt(x**2 + y**2 + z**2), 1e-3)
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    signed = thickness(angle) - anatomy.inner_depth
    box = grid.where_box(signed > -3)
    if box is None:
        return None
    return grid.up_box(signed[box], box)


def draw_sdh(grid: HeadGrid, anatomy: Anatomy, rng: np.random.Generator) -> list[Bleed]:
    side = float(rng.choice([-1.0, 1.0]))
    direction = _unit([side, rng.uniform(-0.6, 0.6), rng.uniform(-0.1, 0.8)])
    t_max = sample_volume_ml(rng, 2.0, 22.0)  # log-uniform thickness (mm): thin films to large collections
    a_max = min(75.0, rng.uniform(25, 45) + 1.5 * t_max)
    signed = _extra_axial(grid, anatomy, direction,
                          lambda a: t_max * np.clip(1 - (a / a_max) ** 2, 0, 1) ** 1.3)
    if signed is None:
        return []
    cbox = grid.coarse_box(signed.box)
    same_side = grid.up_box(grid.x[cbox] * np.float32(side), cbox).data > 1.0  # the falx stops it
    weight = _ramp(signed.data) * (anatomy.intracranial[signed.box] & same_side)
    return [Bleed(Hemorrhage.SDH, Crop(signed.box, weight), float(rng.uniform(55, 80)))]


def draw_edh(grid: HeadGrid, anatomy: Anatomy, rng: np.random.Generator) -> list[Bleed]:
    side = float(rng.choice([-1.0, 1.0]))
    direction = _unit([side, rng.uniform(-0.7, 0.7), rng.uniform(-0.2, 0.6)])
    t_max, a_max = rng.uniform(4, 28), rng.uniform(12, 30)
    signed = _extra_axial(grid, anatomy, direction,
                          lambda a: t_max * np.sqrt(np.clip(1 - (a / a_max) ** 2, 0, 1)))
    if signed is None:
        return []
    weight = _ramp(signed.data) * anatomy.intracranial[signed.box]
    return [Bleed(Hemorrhage.EDH, Crop(signed.box, weight), float(rng.uniform(60, 90)))]
