"""One synthetic case: scanner geometry, anatomy, hemorrhages, noise, and the truth sidecar."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.ndimage import gaussian_filter

from ..geometry import VolumeGeometry
from ..labels import Hemorrhage
from .anatomy import Anatomy, build_anatomy, sample_head
from .grid import HeadGrid
from .lesions import Bleed, draw_edh, draw_iph, draw_ivh, draw_sah, draw_sdh
from .mass_effect import Warp, displacement
from .options import SynthCase, SynthOptions
from .real_masks import RealMaskLibrary, draw_real_iph
from .scanner import sample_scan
from .surroundings import add_head_holder, reconstruction_circle

PAINT_ORDER = (Hemorrhage.SAH, Hemorrhage.SDH, Hemorrhage.EDH, Hemorrhage.IVH, Hemorrhage.IPH)
MIN_LESION_VOXELS = 8
SUBSLICES = 3  # samples across a slice's thickness with slab_partial_volume
SOLID_HU = 150.0  # bone and calcification: denser than any blood
# The anatomy masks that follow the image when it is warped or reduced (tests check lesions against them).
TISSUE_MASKS = ("intracranial", "brain", "csf_spaces", "cisterns", "all_ventricles")


def choose_types(rng: np.random.Generator, options: SynthOptions) -> list[Hemorrhage]:
    allowed = sorted(set(options.types))
    if not allowed or rng.random() < options.p_no_hemorrhage:
        return []
    count = min(len(allowed), int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1])))
    chosen = {Hemorrhage(int(t)) for t in rng.choice(allowed, size=count, replace=False)}
    if Hemorrhage.IPH in chosen and Hemorrhage.IVH in allowed and rng.random() < 0.35:
        chosen.add(Hemorrhage.IVH)  # IPH with ventricular extension
    return sorted(chosen)


def draw_bleeds(grid: HeadGrid, anatomy, rng: np.random.Generator, types: list[Hemorrhage],
                masks: RealMaskLibrary | None) -> list[Bleed]:
    bleeds: list[Bleed] = []
    extension = Hemorrhage.IPH in types and Hemorrhage.IVH in types and rng.random() < 0.6
    for kind in types:
        for _attempt in range(4):  # a lesion drawn outside the slab of slices is drawn again
            if kind is Hemorrhage.IPH and masks is not None:
                drawn = draw_real_iph(grid, anatomy, rng, masks, allow_ivh=Hemorrhage.IVH in types)
            elif kind is Hemorrhage.IPH:
                drawn = draw_iph(grid, anatomy, rng, with_extension=extension)
            elif kind is Hemorrhage.IVH:
                if extension and rng.random() < 0.5:
                    break  # the extension of the IPH is the IVH
                drawn = draw_ivh(grid, anatomy, rng)
            else:
                drawn = {Hemorrhage.SAH: draw_sah, Hemorrhage.SDH: draw_sdh, Hemorrhage.EDH: draw_edh}[kind](
                    grid, anatomy, rng)
            if any(b.voxels() >= MIN_LESION_VOXELS for b in drawn if b.type is kind):
                bleeds.extend(drawn)
                break
    order = {t: i for i, t in enumerate(PAINT_ORDER)}
    return sorted(bleeds, key=lambda b: order[b.type])


def paint(hu: np.ndarray, labels: np.ndarray, bleeds: list[Bleed], anatomy, rng: np.random.Generator) -> None:
    for bleed in bleeds:  # perihematomal edema first, so that blood paints over it
        sd = bleed.signed_distance
        if bleed.edema_mm > 0 and sd is not None:
            ring = anatomy.brain[sd.box] & (sd.data < 0) & (sd.data > -bleed.edema_mm)
            falloff = np.clip(1 + sd.data / bleed.edema_mm, 0, 1)
            hu[sd.box][ring] -= (float(rng.uniform(5, 11)) * falloff[ring]).astype(np.float32)
    for bleed in bleeds:
        box = bleed.weight.box
        # Blood displaces brain and CSF, never bone or calcification: where the tissue masks (drawn on a
        # coarser grid) overlap the skull, the bleed stops at the bone, and so does its label.
        w = bleed.weight.data * (hu[box] < SOLID_HU)
        inside = w > 0
        # Clot is not uniform: a few HU of smooth texture around the bleed's mean density.
        texture = gaussian_filter(rng.standard_normal(w.shape, dtype=np.float32), sigma=(0, 3, 3))
        texture *= np.float32(rng.uniform(2.0, 5.0) / max(float(texture.std()), 1e-6))
        density = bleed.density_hu + texture[inside]
        target = hu[box]
        target[inside] = target[inside] * (1 - w[inside]) + density * w[inside]
        labels[box][w >= 0.5] = int(bleed.type)


def add_noise(hu: np.ndarray, rng: np.random.Generator, pixel_mm: float, halo_max: float = 1.0) -> np.ndarray:
    """Scanner blur and slightly correlated quantum noise of 4-8 HU.

    The blur is a sharp core (a fraction of a millimetre; kernels differ in sharpness) plus a faint wide
    halo: scatter, beam hardening and the reconstruction kernel's tails spread a few percent of the skull's
    density over the millimetres next to it, so the brain along the inner table reads 10-40 HU brighter than
    deeper in. Without it the network learns that any dense rim against bone is a subdural collection.

    `halo_max` > 1 scales the halo by a factor drawn up to it: older scanners and thick slices spread the
    inner table over 2-3 mm at blood-like density (the default draws nothing more, so seeds keep their cases)."""
    sigma_px = float(rng.uniform(0.3, 0.6)) / pixel_mm
    halo = [(float(rng.uniform(0.02, 0.07)), float(rng.uniform(0.8, 1.6)) / pixel_mm),
            (float(rng.uniform(0.005, 0.025)), float(rng.uniform(2.5, 4.0)) / pixel_mm)]
    target = float(rng.uniform(3.0, 6.5))
    if halo_max > 1.0:
        scale = float(rng.uniform(1.0, halo_max))
        halo = [(weight * scale, sigma) for weight, sigma in halo]
    # A Gaussian blur of sigma s pixels scales white noise by 1 / (2 sqrt(pi) s) in 2D.
    gain = 2 * np.sqrt(np.pi) * max(sigma_px, 0.3)
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(target * gain)
    core_weight = 1.0 - sum(weight for weight, _ in halo)
    out = gaussian_filter(hu, sigma=(0, sigma_px, sigma_px), truncate=3.0) * np.float32(core_weight)
    for weight, sigma in halo:
        out += gaussian_filter(hu, sigma=(0, sigma, sigma), truncate=3.0) * np.float32(weight)
    return out


def label_volumes_ml(labels: np.ndarray, geometry: VolumeGeometry) -> dict[str, float]:
    """Volume of each type present, from voxel counts and the true per-slice voxel volume."""
    voxel_ml = geometry.voxel_volumes_ml()
    out = {}
    for kind in Hemorrhage:
        per_slice = (labels == int(kind)).sum(axis=(1, 2))
        if per_slice.any():
            out[kind.name] = float(per_slice @ voxel_ml)
    return out


def make_truth(labels: np.ndarray, geometry: VolumeGeometry, seed: int, extras: dict) -> dict:
    """The sidecar. `volumes_ml` use the true slice positions (the DICOM study); a NIfTI file can only hold
    evenly spaced slices, so `nifti_volumes_ml` gives what its grid implies (equal unless the gaps vary)."""
    volumes = label_volumes_ml(labels, geometry)
    shape_xyz = (geometry.columns, geometry.rows, geometry.shape[0])
    nifti_grid = VolumeGeometry.from_nifti_affine(geometry.nifti_affine(), shape_xyz)
    types = [k for k in (t.name for t in Hemorrhage) if k in volumes]
    return {
        "seed": seed,
        "volumes_ml": {k: round(v, 6) for k, v in volumes.items()},
        "total_ml": round(sum(volumes.values()), 6),
        "types": types,
        "classification": "+".join(types) if types else "none",
        "regular_spacing": geometry.is_regular(),
        "nifti_volumes_ml": {k: round(v, 6) for k, v in label_volumes_ml(labels, nifti_grid).items()},
        "geometry": geometry.describe(),
        **extras,
    }


def slab_geometry(geometry: VolumeGeometry, thickness_mm: float) -> VolumeGeometry:
    """SUBSLICES sub-slices per slice, spread over its thickness along the normal (no wider than the
    narrowest gap, so that the stack stays in order)."""
    gaps = np.diff(geometry.slice_offsets()) if geometry.shape[0] > 1 else np.array([thickness_mm])
    width = min(thickness_mm, float(np.abs(gaps).min()))
    steps = (np.arange(SUBSLICES) - (SUBSLICES - 1) / 2) * (width / SUBSLICES)
    positions = (geometry.positions[:, None, :] + steps[None, :, None] * geometry.normal).reshape(-1, 3)
    return VolumeGeometry(positions, geometry.row_cosine, geometry.col_cosine, geometry.pixel_spacing,
                          geometry.rows, geometry.columns)


def _average_slabs(hu: np.ndarray, labels: np.ndarray, anatomy: Anatomy):
    """Sub-slices -> slices: HU averaged; a voxel is labelled when most of its sub-slices are (the type of
    the middle one, else of an outer one); the tissue masks of the middle sub-slice."""
    n = hu.shape[0] // SUBSLICES
    hu = hu.reshape(n, SUBSLICES, *hu.shape[1:]).mean(axis=1)
    sub = labels.reshape(n, SUBSLICES, *labels.shape[1:])
    middle = sub[:, SUBSLICES // 2]
    kind = np.where(middle > 0, middle, sub.max(axis=1))
    labels = np.where((sub > 0).sum(axis=1) * 2 > SUBSLICES, kind, 0).astype(np.uint8)
    anatomy = replace(anatomy, **{m: getattr(anatomy, m)[SUBSLICES // 2 :: SUBSLICES] for m in TISSUE_MASKS})
    return hu.astype(np.float32), labels, anatomy


def simulate(seed: int, options: SynthOptions | None = None) -> tuple[SynthCase, Anatomy]:
    """The case and the anatomy it was drawn on (its tissue masks are what tests check lesions against)."""
    options = options or SynthOptions()
    rng = np.random.default_rng(seed)
    head = sample_head(rng)
    geometry, head_center, rotation, acquisition = sample_scan(rng, options, head.c)
    rows, cols = geometry.rows, geometry.columns
    down = 2 if rows % 2 == 0 and cols % 2 == 0 and min(rows, cols) >= 256 else 1
    drawn_on = slab_geometry(geometry, acquisition.nominal_thickness_mm) if options.slab_partial_volume else geometry
    grid = HeadGrid(drawn_on, head_center, rotation, down)
    anatomy = build_anatomy(grid, head, rng)
    types = choose_types(rng, options)
    masks = RealMaskLibrary.open(options.lesion_masks) if options.lesion_masks else None
    bleeds = draw_bleeds(grid, anatomy, rng, types, masks)

    hu = anatomy.hu.copy()
    if rng.random() < 0.8:
        add_head_holder(hu, hu <= -999.0, grid, rng, (head.a, head.b))
    labels = np.zeros(drawn_on.shape, dtype=np.uint8)
    paint(hu, labels, bleeds, anatomy, rng)
    shift = displacement(grid, anatomy, bleeds, rng)
    if shift is not None:
        warp = Warp(*shift)
        hu, labels = warp.linear(hu), warp.nearest(labels)
        anatomy = replace(anatomy, **{name: warp.nearest(getattr(anatomy, name)) for name in TISSUE_MASKS})
    if drawn_on is not geometry:
        hu, labels, anatomy = _average_slabs(hu, labels, anatomy)
    hu = add_noise(hu, rng, geometry.pixel_spacing[0], options.skull_halo_max)
    hu_int = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    hu_int[:, ~reconstruction_circle(geometry.shape)] = -1024
    # The scanner's blur (and slab averaging) spreads the skull into the voxels next to it: one that now reads as
    # solid is bone to a reader (white on a subdural window), so it is not labelled blood, as paint() intends.
    labels[hu_int >= SOLID_HU] = 0
    extras = {
        "acquisition": {
            "tilt_degrees": acquisition.tilt_degrees,
            "nominal_thickness_mm": acquisition.nominal_thickness_mm,
            "signed_pixels": acquisition.signed_pixels,
            "manufacturer": acquisition.manufacturer,
        },
        "requested_types": [t.name for t in types],
    }
    truth = make_truth(labels, geometry, seed, extras)
    return SynthCase(hu_int, labels, geometry, truth, acquisition, seed), anatomy


def generate_case(seed: int, options: SynthOptions | None = None) -> SynthCase:
    """A synthetic head CT with its label map; the same seed gives the same case."""
    return simulate(seed, options)[0]
