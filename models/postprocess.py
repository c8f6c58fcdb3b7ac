"""Anatomical post-processing of the cascade's labels: hemorrhage lies inside the skull and is denser than
water, a speck of a few voxels is not a finding, and subdural or epidural blood lies against bone. The rules are
plain image analysis, applied after the networks, and can be switched off in the model config
(`cascade.intracranial_gate`, `cascade.component_median_hu`, `cascade.min_stage1_support_near_bone`,
`cascade.min_film_depth_fraction`, `cascade.min_component_ml`, `cascade.rim_growth_hu`,
`cascade.retype_detached_extra_axial`). The same cavity finder checks, before the networks run, that the image is
a head at all (`cascade.require_cranial_cavity`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

BONE_HU = 150.0  # calcified bone; partial-volume skull edges lie between this and blood
CLOSING_MM = 2.0  # seals sutures, foramina and thin bone a slice cuts obliquely
MIN_CAVITY_MM2 = 200.0  # smaller enclosed pockets (canals, mastoid cells) are not the cranial cavity
CAVITY_MEDIAN_HU = (-50.0, 90.0)  # brain, CSF and blood; air-filled sinuses and marrow fall outside
MAX_JUDGED_PIXEL_MM = 3.0  # diagnostic head CT has pixels under 1 mm; toy grids of 4 mm lose the skull's ring
RIM_MM = 1.0  # the cavity is grown by this much so collections against the inner table stay inside
BONE_CONTACT_MM = 1.0  # a finding this close to bone (in-plane) lies in the reach of its partial volume
SIDE_BAND_MM = (0.5, 2.5)  # the band inside the inner table where the two sides of the head are compared
SIDE_BESIDE_MM = 3.0  # how far beside a finding (in-plane) the band is read
SIDE_MIN_ML = 0.5  # below this a finding's band is too small to compare the sides: specks are 0.01-0.05 ml

Spare = Callable[[np.ndarray, tuple[slice, ...]], bool]  # (component mask over its box, box) -> keep it anyway


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy**2 + xx**2) <= radius**2


def intracranial_mask(hu: np.ndarray, pixel_spacing: tuple[float, float]) -> np.ndarray:
    """Boolean (z, y, x) mask of the cranial cavity, slice by slice: soft-tissue regions that bone
    encloses in the slice plane (after a small closing of the bone), large enough and of brain-like
    density, grown by a millimetre.

    Slices beyond the last ones with a cavity (face and neck below the skull base, scalp above the vertex)
    are excluded. A slice between cavity slices that has none (the skull base cut through its foramina, a
    craniectomy, a fracture gap) takes the union of the nearest cavities above and below it. When no slice
    has a cavity (not a head), nothing is excluded: the gate never hides what it cannot judge."""
    hu = np.asarray(hu)
    cavities = [_cavity(hu[z], pixel_spacing) for z in range(hu.shape[0])]
    found = [z for z, cavity in enumerate(cavities) if cavity is not None]
    if not found:
        return np.ones(hu.shape, dtype=bool)
    mask = np.zeros(hu.shape, dtype=bool)
    for z in range(found[0], found[-1] + 1):
        if cavities[z] is not None:
            mask[z] = cavities[z]
        else:
            below = max(f for f in found if f < z)
            above = min(f for f in found if f > z)
            mask[z] = cavities[below] | cavities[above]
    return mask


def lacks_cranial_cavity(hu: np.ndarray, pixel_spacing: tuple[float, float]) -> bool:
    """True when no slice shows a cranial cavity (as `intracranial_mask` finds it). The search starts at the
    middle slice, where a head CT has one, and stops at the first found. Pixels coarser than
    `MAX_JUDGED_PIXEL_MM` are not judged (False): partial volume breaks the skull's ring there."""
    if max(pixel_spacing) > MAX_JUDGED_PIXEL_MM:
        return False
    hu = np.asarray(hu)
    middle = hu.shape[0] // 2
    return not any(_cavity(hu[z], pixel_spacing) is not None
                   for z in sorted(range(hu.shape[0]), key=lambda z: abs(z - middle)))


def _cavity(hu_slice: np.ndarray, pixel_spacing: tuple[float, float]) -> np.ndarray | None:
    pixel_mm = float(min(pixel_spacing))
    solid = hu_slice > BONE_HU
    if not solid.any():
        return None
    radius = max(1, int(round(CLOSING_MM / pixel_mm)))
    # Closed and filled around the bone only: past 2 radii of it both give what they give on the whole slice.
    bone_box = ndimage.find_objects(solid.astype(np.uint8))[0]
    near = _grown_in_plane((slice(0, 1), *bone_box), (1, *solid.shape), 2 * radius + 1)[1:]
    bone = np.zeros_like(solid)
    bone[near] = ndimage.binary_closing(solid[near], _disk(radius))
    enclosed = np.zeros_like(solid)
    enclosed[near] = ndimage.binary_fill_holes(bone[near]) & ~bone[near]
    pockets, count = ndimage.label(enclosed)
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(enclosed, pockets, index)
    medians = np.atleast_1d(ndimage.median(hu_slice[enclosed], pockets[enclosed], index))
    min_pixels = MIN_CAVITY_MM2 / (pixel_spacing[0] * pixel_spacing[1])
    keep = index[(areas >= min_pixels) & (medians > CAVITY_MEDIAN_HU[0]) & (medians < CAVITY_MEDIAN_HU[1])]
    if keep.size == 0:
        return None
    return ndimage.binary_dilation(np.isin(pockets, keep), _disk(max(1, int(round(RIM_MM / pixel_mm)))))


def drop_implausible_components(labels: np.ndarray, hu: np.ndarray, hu_range) -> int:
    """Clear (in place) connected hemorrhage components whose median HU lies outside `hu_range`; returns how
    many were cleared."""
    components, count = ndimage.label(labels > 0)
    if count == 0:
        return 0
    found = components > 0  # the medians over the found voxels only: the same values, far fewer to sort
    medians = ndimage.median(hu[found], components[found], index=np.arange(1, count + 1))
    bad = [i + 1 for i, m in enumerate(np.atleast_1d(medians)) if not hu_range[0] <= m <= hu_range[1]]
    if bad:
        labels[np.isin(components, bad)] = 0
    return len(bad)


def drop_unsupported_components(
    labels: np.ndarray, hu: np.ndarray, pixel_spacing: tuple[float, float],
    support: Callable[[tuple[slice, ...]], np.ndarray], min_mean: float, spare: Spare | None = None,
) -> int:
    """Clear (in place) connected hemorrhage components that touch bone (a voxel within `BONE_CONTACT_MM`
    in-plane of one over `BONE_HU`) and over which the mean of `support` (a map over the component's bounding
    box, same shape) stays under `min_mean`, unless `spare` keeps them; returns how many were cleared."""
    components, count = ndimage.label(labels > 0)
    reach = _bone_contact_pixels(pixel_spacing)
    cleared = 0
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        inside = components[box] == index
        if support(box)[inside].mean() >= min_mean or not _touches_bone(hu, components, index, box, reach):
            continue
        if spare is not None and spare(inside, box):
            continue
        labels[box][inside] = 0
        cleared += 1
    return cleared


def drop_thin_films(
    labels: np.ndarray, hu: np.ndarray, pixel_spacing: tuple[float, float], types: tuple[int, ...],
    depth_mm: float, min_fraction: float, spare: Spare | None = None,
) -> int:
    """Clear (in place) connected hemorrhage components of one of `types` (the component's most common label)
    that touch bone and of whose voxels fewer than `min_fraction` lie `depth_mm` or more in-plane from bone: films
    that hug the skull, unless `spare` keeps them; returns how many were cleared."""
    components, count = ndimage.label(labels > 0)
    if count == 0 or not types:
        return 0
    pixel_mm = float(min(pixel_spacing))
    reach = _bone_contact_pixels(pixel_spacing)
    cleared = 0
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        inside = components[box] == index
        if int(np.bincount(labels[box][inside], minlength=max(types) + 1).argmax()) not in types:
            continue
        if not _touches_bone(hu, components, index, box, reach):
            continue
        deep = _bone_distance_mm(hu, box, pixel_mm, depth_mm)[inside] >= depth_mm
        if deep.mean() < min_fraction and not (spare is not None and spare(inside, box)):
            labels[box][inside] = 0
            cleared += 1
    return cleared


def side_contrast_hu(hu: np.ndarray, cavity: np.ndarray, component: np.ndarray, box: tuple[slice, ...],
                     pixel_spacing: tuple[float, float]) -> float | None:
    """How many HU brighter (median) the band `SIDE_BAND_MM` inside the inner table reads within `SIDE_BESIDE_MM`
    of a component (a mask over `box`) than the same band at the mirror position across the head, over the
    component's slices; None where either side has no such band. The skull's blurred inner edge is about as
    bright on both sides, where the slice cuts it obliquely above all; a collection brightens one side only.
    The mirror is taken about the middle column of the cranial cavity (`cavity`, as `intracranial_mask`) in each
    slice."""
    pixel_mm = float(min(pixel_spacing))
    beside_px = max(1, int(round(SIDE_BESIDE_MM / pixel_mm)))
    here, there = [], []
    for offset, z in enumerate(range(box[0].start, box[0].stop)):
        if not component[offset].any() or not cavity[z].any():
            continue
        found = np.zeros(hu.shape[1:], dtype=bool)
        found[box[1:]] = component[offset]
        whole_slice = (slice(z, z + 1), slice(0, hu.shape[1]), slice(0, hu.shape[2]))
        distance = _bone_distance_mm(hu, whole_slice, pixel_mm, SIDE_BAND_MM[1])[0]
        band = cavity[z] & (distance >= SIDE_BAND_MM[0]) & (distance < SIDE_BAND_MM[1])
        near = _grown_in_plane(box, hu.shape, beside_px)[1:]  # dilating there only gives the same, faster
        beside = np.zeros_like(found)
        beside[near] = ndimage.binary_dilation(found[near], _disk(beside_px))
        columns = np.flatnonzero(cavity[z].any(axis=0))
        mirror = np.round(columns[0] + columns[-1] - np.arange(hu.shape[2])).astype(int)
        inside = (mirror >= 0) & (mirror < hu.shape[2])
        mirrored = np.zeros_like(beside)
        mirrored[:, inside] = beside[:, mirror[inside]]
        here.append(hu[z][band & beside])
        there.append(hu[z][band & mirrored & ~beside])
    here = np.concatenate(here) if here else np.empty(0)
    there = np.concatenate(there) if there else np.empty(0)
    if here.size == 0 or there.size == 0:
        return None
    return float(np.median(here) - np.median(there))


def _bone_distance_mm(hu: np.ndarray, box: tuple[slice, ...], pixel_mm: float, depth_mm: float) -> np.ndarray:
    """In-plane distance (mm) to the nearest bone voxel, slice by slice, over `box`; bone up to `depth_mm`
    beyond the box counts (distances past that are only known to be at least `depth_mm`)."""
    grown = _grown_in_plane(box, hu.shape, int(np.ceil(depth_mm / pixel_mm)) + 1)
    bone = hu[grown] > BONE_HU
    distance = np.stack([ndimage.distance_transform_edt(~plane) if plane.any() else np.full(plane.shape, np.inf)
                         for plane in bone]) * pixel_mm
    return distance[(slice(None),) + tuple(slice(s.start - g.start, s.stop - g.start)
                                           for s, g in zip(box[1:], grown[1:], strict=True))]


def _grown_in_plane(box: tuple[slice, ...], shape: tuple[int, ...], pixels: int) -> tuple[slice, ...]:
    """`box` grown by `pixels` in y and x, within `shape`; its slices kept."""
    return (box[0],) + tuple(slice(max(0, s.start - pixels), min(n, s.stop + pixels))
                             for s, n in zip(box[1:], shape[1:], strict=True))


def _bone_contact_pixels(pixel_spacing: tuple[float, float]) -> int:
    """BONE_CONTACT_MM in pixels (at least one), for `_touches_bone`."""
    return max(1, int(round(BONE_CONTACT_MM / float(min(pixel_spacing)))))


def _touches_bone(hu: np.ndarray, components: np.ndarray, index: int, box: tuple[slice, ...], reach: int) -> bool:
    grown = _grown_in_plane(box, hu.shape, reach)
    near = ndimage.binary_dilation(components[grown] == index, _disk(reach)[None])
    return bool((near & (hu[grown] > BONE_HU)).any())


def drop_small_components(labels: np.ndarray, voxel_volumes_ml: np.ndarray, min_ml: float) -> int:
    """Clear (in place) connected hemorrhage components smaller than `min_ml`, given each slice's voxel volume
    (ml); returns how many were cleared."""
    components, count = ndimage.label(labels > 0)
    if count == 0 or min_ml <= 0:
        return 0
    per_voxel = np.broadcast_to(np.asarray(voxel_volumes_ml, dtype=np.float64)[:, None, None], labels.shape)
    volumes = np.atleast_1d(ndimage.sum_labels(per_voxel, components, index=np.arange(1, count + 1)))
    small = np.flatnonzero(volumes < min_ml) + 1
    if small.size:
        labels[np.isin(components, small)] = 0
    return int(small.size)


def retype_detached_extra_axial(labels: np.ndarray, hu: np.ndarray, pixel_spacing: tuple[float, float],
                                types: tuple[int, ...]) -> int:
    """Give (in place) each connected region of `types` (subdural, epidural) that does not touch bone the most
    common other hemorrhage type around it, when one borders it: blood that lies against no bone, inside a
    parenchymal or ventricular bleed, is not extra-axial. A region bordered by no other type (along the falx,
    for example) keeps its type. Returns how many regions were retyped."""
    regions, count = ndimage.label(np.isin(labels, types))
    if count == 0:
        return 0
    reach = _bone_contact_pixels(pixel_spacing)
    retyped = 0
    for index, box in enumerate(ndimage.find_objects(regions), start=1):
        if _touches_bone(hu, regions, index, box, reach):
            continue
        grown = tuple(slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(box, labels.shape, strict=True))
        inside = regions[grown] == index
        border = labels[grown][ndimage.binary_dilation(inside) & ~inside]
        border = border[(border > 0) & ~np.isin(border, types)]
        if border.size:
            labels[grown][inside] = np.bincount(border).argmax()
            retyped += 1
    return retyped


_IN_PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_CROSS[1] = ndimage.generate_binary_structure(2, 1)


def grow_rim(labels: np.ndarray, hu: np.ndarray, hu_range, types=None) -> int:
    """Add (in place) the one-pixel in-plane ring (4-neighbours) around hemorrhage where the HU lies within
    `hu_range`, each voxel with the type of a neighbour (the highest label among them); only around the labels
    in `types` when given. Returns how many voxels joined."""
    source = labels if types is None else np.where(np.isin(labels, types), labels, 0)
    found = source > 0
    if not found.any():
        return 0
    ring = ndimage.binary_dilation(found, _IN_PLANE_CROSS) & (labels == 0) & (hu >= hu_range[0]) & (hu <= hu_range[1])
    if ring.any():
        labels[ring] = ndimage.grey_dilation(source, footprint=_IN_PLANE_CROSS)[ring]
    return int(ring.sum())
