"""Head anatomy in Hounsfield units: scalp, skull vault and base, CSF spaces, cortex, white matter, deep
gray nuclei, ventricles, cisterns, cerebellum, falx and physiological calcifications.

Shapes are smooth fields in the head frame (see grid.py) evaluated on the coarse grid and thresholded at
full resolution. The masks kept in `Anatomy` tell the lesion painters where each hemorrhage type may lie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import Crop, HeadGrid, rotation_matrix


@dataclass(frozen=True)
class HeadParams:
    a: float  # outer semi-axes of the head (mm): left-right, antero-posterior, cranio-caudal
    b: float
    c: float
    scalp: float  # thickness (mm)
    skull: float
    csf_rim: float
    atrophy: float  # 0 young .. 1 atrophic: larger ventricles, sulci and CSF rim
    hu_gray: float
    hu_white: float
    hu_csf: float
    hu_cortical_bone: float
    hu_diploe: float

    @property
    def ventricle_scale(self) -> float:
        return 0.75 + 0.9 * self.atrophy


def sample_head(rng: np.random.Generator) -> HeadParams:
    atrophy = float(rng.beta(1.5, 2.5))
    hu_white = float(rng.uniform(25.0, 30.0))
    return HeadParams(
        a=float(rng.uniform(68, 80)), b=float(rng.uniform(86, 100)), c=float(rng.uniform(82, 95)),
        scalp=float(rng.uniform(3.0, 7.0)), skull=float(rng.uniform(5.0, 8.5)),
        csf_rim=float(2.8 * atrophy * rng.uniform(0.0, 1.0)), atrophy=atrophy,
        hu_gray=float(hu_white + rng.uniform(8.0, 12.0)), hu_white=hu_white,
        hu_csf=float(rng.uniform(2.0, 12.0)),
        hu_cortical_bone=float(rng.uniform(1100.0, 1700.0)), hu_diploe=float(rng.uniform(350.0, 700.0)),
    )


@dataclass(eq=False)
class Anatomy:
    params: HeadParams
    hu: np.ndarray  # float32, full resolution, noise-free
    intracranial: np.ndarray  # bool: inside the inner table and above the skull base
    brain: np.ndarray  # bool: parenchyma (cortex, white matter, nuclei, cerebellum, brainstem)
    csf_spaces: np.ndarray  # bool: extra-axial CSF (rim, sulci, fissures, cisterns), not the ventricles
    cisterns: np.ndarray  # bool: basal cisterns and Sylvian fissures
    ventricles: dict[str, Crop]  # left, right (lateral), third, fourth
    all_ventricles: np.ndarray  # bool
    inner_depth: np.ndarray  # float32 coarse: mm from the inner table / skull base into the cranium
    inner_depth_full: np.ndarray  # float32 full resolution


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _skull_base_floor(x, y, p: HeadParams, wobble: np.ndarray) -> np.ndarray:
    """Height (head z, mm) of the cranial floor: anterior fossa high, middle fossa deep laterally (temporal
    lobes) and higher in the midline (sella), posterior fossa deepest."""
    yn, xn = y / p.b, np.abs(x) / p.a
    anterior = _sigmoid((-yn - 0.25) / 0.05)
    posterior = _sigmoid((yn - 0.12) / 0.05)
    lateral = _sigmoid((xn - 0.28) / 0.05)
    middle = -0.58 * p.c * lateral - 0.36 * p.c * (1 - lateral)
    floor = anterior * (-0.30 * p.c) + posterior * (-0.72 * p.c) + (1 - anterior - posterior) * middle
    return floor + 2.0 * wobble


def _union(grid: HeadGrid, parts) -> Crop | None:
    """Full-resolution mask of a union of ellipsoids ((centre, semi, yaw) each), as one crop."""
    crops = [grid.ellipsoid_mask(c, s, rotation_matrix(yaw, 0, 0)) for c, s, yaw in parts]
    crops = [c for c in crops if c is not None]
    if not crops:
        return None
    box = tuple(slice(min(c.box[a].start for c in crops), max(c.box[a].stop for c in crops)) for a in range(3))
    data = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
    for c in crops:
        local = tuple(slice(c.box[a].start - box[a].start, c.box[a].stop - box[a].start) for a in range(3))
        data[local] |= c.data
    return Crop(box, data)


def _lateral_ventricle(p: HeadParams, side: float):
    vs = p.ventricle_scale
    return [  # (centre, semi-axes, yaw): body, frontal horn, atrium + occipital horn, temporal horn
        ((side * (1.5 + 6 * vs), 2, 22), (6 * vs, 23, 8 * vs), side * 4),
        ((side * (1.5 + 5.5 * vs), -22, 14), (5.5 * vs, 11, 9 * vs), -side * 18),
        ((side * (12 + 5 * vs), 24, 12), (6.5 * vs, 14, 9 * vs), side * 25),
        ((side * 29, -6, -14), (2.5 * vs, 14, 3.5 * vs), side * 20),
    ]


def _paint(hu: np.ndarray, crop: Crop | None, value, within: np.ndarray | None = None) -> None:
    if crop is None:
        return
    m = crop.data if within is None else crop.data & within[crop.box]
    target = hu[crop.box]
    target[m] = value if np.isscalar(value) else value[m]


def build_anatomy(grid: HeadGrid, p: HeadParams, rng: np.random.Generator) -> Anatomy:
    x, y, z = grid.x, grid.y, grid.z
    up = grid.up
    shape = grid.full_shape
    lf = grid.smooth_noise(rng, 12.0)  # low-frequency: head shape, bone thickness, tissue drift
    gyri = grid.smooth_noise(rng, 3.2)  # gyral pattern
    texture = grid.smooth_noise(rng, 1.3)  # bone texture, cerebellar folia, facial fat

    # Radial depth below the skin; below the brain the head keeps its cross-section (face and neck).
    ze = np.maximum(z, np.float32(-0.8 * p.c))
    r = np.sqrt((x / p.a) ** 2 + (y / p.b) ** 2 + (ze / p.c) ** 2) * (1 + 0.015 * lf)
    depth = np.sqrt(x**2 + y**2 + ze**2) * (1 - r) / np.maximum(r, 1e-3)
    temporal = np.clip((np.abs(x) / p.a - 0.55) / 0.4, 0, 1) * (z < 0.3 * p.c)
    skull = p.skull * (1 + 0.18 * lf) * (1 - 0.4 * temporal)
    floor_dz = z - _skull_base_floor(x, y, p, lf)
    inner_depth = np.minimum(depth - p.scalp - skull, floor_dz)  # into the cranial cavity (mm)
    base_t = float(rng.uniform(4.0, 9.0))
    # > 0 in bone: under the outer table of the vault, or in the plate below the cranial floor
    # (the vault's shell ends some way below the cranial floor: no skull ring around the neck)
    bone_field = np.maximum(np.minimum(p.scalp + skull - depth, floor_dz + base_t + 25.0), floor_dz + base_t)
    u = np.clip((depth - p.scalp) / skull, 0, 1)
    vault = np.clip((np.abs(2 * u - 1) - 0.3) / 0.35, 0, 1)
    bone_hu = np.where(floor_dz < 0, p.hu_cortical_bone * (0.55 + 0.2 * texture),
                       p.hu_diploe + 60 * texture + (p.hu_cortical_bone - p.hu_diploe) * vault)
    # Pneumatised skull base: sphenoid sinus (one cavity), mastoid air cells (honeycomb).
    sphenoid = grid.ellipsoid((0, -0.3 * p.b, -0.45 * p.c), (12, 11, 10))
    mastoid = np.minimum(grid.ellipsoid((0.72 * p.a, 0.22 * p.b, -0.6 * p.c), (11, 13, 13)),
                         grid.ellipsoid((-0.72 * p.a, 0.22 * p.b, -0.6 * p.c), (11, 13, 13)))
    air_cells = (floor_dz < 0) & ((sphenoid < 1) | ((mastoid < 1) & (np.abs(texture) < 0.6)))
    bone_hu = np.where(air_cells, -850.0, bone_hu)

    depth_f, inner_f = up(depth), up(inner_depth)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    head = depth_f > 0
    hu[head] = 38.0
    fat_t = float(rng.uniform(0.5, 2.5))
    hu[(depth_f > 1.0) & (depth_f < 1.0 + fat_t)] = -90.0
    intracranial = inner_f >= 0
    below_scalp = (depth_f >= p.scalp) & ~intracranial
    bone = below_scalp & (up(bone_field) > 0)
    face = below_scalp & ~bone
    hu[bone] = up(bone_hu)[bone]

    # Below the skull base: face and neck soft tissue with fat planes, paranasal air and the orbits.
    face_box = grid.where_box((inner_depth < 0) & (floor_dz < 0) & (depth > 0))
    if face_box is not None:
        fb = grid.full_box(face_box)
        soft = np.where(grid.up_box(texture[face_box], face_box).data < -1.5, -85.0, 42.0)
        hu[fb][face[fb]] = soft[face[fb]]
        _paint(hu, grid.ellipsoid_mask((0, -0.55 * p.b, -0.62 * p.c), (14, 18, 20)), -950.0, face)
        # Ethmoid cells and nasal cavity between the orbits, maxillary sinuses below them.
        _paint(hu, grid.ellipsoid_mask((0, -0.78 * p.b, -0.62 * p.c), (11, 16, 24)), -900.0, face)
        for side in (-1.0, 1.0):
            _paint(hu, grid.ellipsoid_mask((side * 24, -0.68 * p.b, -0.88 * p.c), (13, 15, 16)), -950.0, face)
        for side in (-1.0, 1.0):
            _paint(hu, grid.ellipsoid_mask((side * 32, -0.7 * p.b, -0.48 * p.c), (17, 18, 16)), -80.0, face)
            _paint(hu, grid.ellipsoid_mask((side * 32, -0.78 * p.b, -0.48 * p.c), (12, 12, 12)), 12.0, face)

    # Cranial cavity: CSF rim, cortex and white matter.
    brain_depth_f = inner_f - np.float32(p.csf_rim)
    brain = brain_depth_f >= 0
    hu[intracranial] = p.hu_csf
    sulcal_band = float(14 + 8 * p.atrophy)
    gyri_f = np.abs(up(gyri))
    sulcus_width = (0.16 + 0.22 * p.atrophy) * np.clip(1 - brain_depth_f / sulcal_band, 0, 1) ** 0.7
    sulci = brain & (gyri_f < sulcus_width)
    cortex = brain & ((brain_depth_f < 2.5) | ((gyri_f < 0.85) & (brain_depth_f < sulcal_band + 2)))
    drift = up(lf) * np.float32(1.2)
    hu[brain] = p.hu_white
    hu[cortex] = p.hu_gray

    # Posterior fossa: cerebellum with folia, brainstem, fourth ventricle.
    infra = (y / p.b > 0.12) & (z < -0.3 * p.c)
    infra_box = grid.where_box(infra)
    infratentorial = np.zeros(shape, dtype=bool)
    if infra_box is not None:
        ib = grid.full_box(infra_box)
        infratentorial[ib] = grid.up_box(infra[infra_box].astype(np.float32), infra_box).data > 0.5
        folia = np.abs(grid.up_box(texture[infra_box], infra_box).data)
        cerebellum = brain[ib] & infratentorial[ib]
        hu[ib][cerebellum] = np.where(folia < 0.7, p.hu_gray - 1, p.hu_white + 3)[cerebellum]
        sulci[ib] &= ~infratentorial[ib] | (folia < 0.08)
    _paint(hu, grid.ellipsoid_mask((0, 0.1 * p.b, -0.42 * p.c), (13, 12, 26)), p.hu_white + 2, brain)

    vs = p.ventricle_scale
    for side in (-1.0, 1.0):
        nuclei = _union(grid, [((side * (5 + 5 * vs), -14, 14), (5, 8, 8), 0),  # caudate head
                               ((side * 24, -2, 5), (6, 14, 9), side * 15),  # lentiform
                               ((side * 10, 8, 6), (8, 12, 8), 0)])  # thalamus
        _paint(hu, nuclei, p.hu_gray - 2, brain)

    csf = (intracranial & ~brain) | sulci
    midbrain = _union(grid, [((0, 10, -14), (11, 10, 12), 0)])
    cistern_parts = _union(grid, [((0, 6, -16), (19, 21, 7), 0), ((0, 25, -5), (6, 5, 6), 0)])
    cisterns = np.zeros(shape, dtype=bool)
    if cistern_parts is not None:
        cisterns[cistern_parts.box] = cistern_parts.data
        if midbrain is not None:
            cisterns[midbrain.box] &= ~midbrain.data
    sylvian_w = 2.0 + 2.5 * p.atrophy
    sylvian = _union(grid, [((s * 40, -8, -4), (sylvian_w, 20, 10), -s * 30) for s in (-1.0, 1.0)])
    if sylvian is not None:
        cisterns[sylvian.box] |= sylvian.data
    cisterns &= intracranial
    csf |= cisterns

    # Falx and interhemispheric fissure above and in front of / behind the corpus callosum.
    mid = (np.abs(x) < 4) & ~((z < 32) & (np.abs(y) < 38)) & ~infra
    falx = np.zeros(shape, dtype=bool)
    mid_box = grid.where_box(mid)
    if mid_box is not None:
        mb = grid.full_box(mid_box)
        xf = np.abs(grid.up_box(x[mid_box], mid_box).data)
        keep = grid.up_box(mid[mid_box].astype(np.float32), mid_box).data > 0.5
        csf[mb] |= intracranial[mb] & keep & (xf < 1.2 + 1.5 * p.atrophy)
        falx[mb] = intracranial[mb] & keep & (xf < 0.4)

    ventricles = {
        "left": _union(grid, _lateral_ventricle(p, 1.0)),
        "right": _union(grid, _lateral_ventricle(p, -1.0)),
        "third": _union(grid, [((0, 2, 4), (1.2 + 1.0 * vs, 12, 9), 0)]),
        "fourth": _union(grid, [((0, 0.3 * p.b, -0.42 * p.c), (6, 4, 7), 0)]),
    }
    ventricles = {k: Crop(v.box, v.data & intracranial[v.box]) for k, v in ventricles.items() if v is not None}
    all_vent = np.zeros(shape, dtype=bool)
    for v in ventricles.values():
        all_vent[v.box] |= v.data
    csf |= all_vent
    hu[csf] = p.hu_csf
    hu[falx] = float(rng.uniform(45, 70))
    brain &= ~csf & ~falx
    hu[brain] += drift[brain]

    # Beam hardening: the brain next to the skull reads brighter, by a few HU on a modern scanner and by
    # 20-30 HU on older ones, fading over millimetres.
    strength, reach = float(rng.uniform(3.0, 28.0)), float(rng.uniform(1.5, 4.0))
    near = intracranial & (inner_f < 4 * reach)
    hu[near] += (strength * np.exp(-inner_f[near] / reach)).astype(np.float32)

    # Bright non-hemorrhage mimics: choroid plexus in the atria, pineal gland, sometimes the falx.
    if rng.random() < 0.65:
        for side in (-1.0, 1.0):
            plexus = grid.ellipsoid_mask((side * (11 + 4 * vs), 25, 12), (rng.uniform(1.5, 3.5),) * 3)
            _paint(hu, plexus, float(rng.uniform(150, 400)), intracranial)
    if rng.random() < 0.5:
        _paint(hu, grid.ellipsoid_mask((0, 20, 3), (rng.uniform(1.5, 3.0),) * 3), float(rng.uniform(100, 300)),
               intracranial)
    if rng.random() < 0.1:  # basal ganglia (globus pallidus) calcification
        for side in (-1.0, 1.0):
            dots = grid.ellipsoid_mask((side * 19, -1, 4), (rng.uniform(1.5, 3), rng.uniform(2, 5), 2.5))
            _paint(hu, dots, float(rng.uniform(100, 250)), brain)
    if rng.random() < 0.15:  # an old infarct: hypodense, not blood
        side = float(rng.choice([-1.0, 1.0]))
        center = (side * rng.uniform(25, 45), rng.uniform(-40, 50), rng.uniform(0, 45))
        old = grid.ellipsoid_mask(center, rng.uniform(5, 18, 3), rotation_matrix(rng.uniform(-90, 90), 0, 0))
        _paint(hu, old, float(p.hu_csf + rng.uniform(3, 12)), brain)
    if rng.random() < 0.2:
        plaque = grid.ellipsoid_mask((0, rng.uniform(-40, 40), rng.uniform(35, 60)), (2, 6, 4))
        _paint(hu, plaque, float(rng.uniform(200, 500)), falx)

    return Anatomy(p, hu, intracranial, brain, csf & ~all_vent, cisterns, ventricles, all_vent,
                   inner_depth, inner_f)
