"""Volume of each hemorrhage type and the ABC/2 (Tada) estimate of each connected lesion.

Volumes come from the mask: voxel count per slice times the true voxel volume of that slice, so gantry tilt
and uneven slice gaps are accounted for (VolumeGeometry.voxel_volumes_ml). Lesions are 3D connected components
(26-connectivity) of one type. ABC/2 per lesion:

- A: greatest diameter on the slice where the lesion has its largest area;
- B: greatest extent perpendicular to A on that slice (see diameters.py);
- C: the slices holding the lesion times their spacing along the normal; with uneven gaps each slice
  counts with its own slab thickness, so C = number of slices x mean local spacing;
- Kothari's C: each slice weighted 1 (area >= 75% of the largest), 0.5 (25-75%) or 0 (< 25%).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..geometry import VolumeGeometry
from ..labels import NUM_CLASSES, Hemorrhage
from .diameters import greatest_diameters
from .results import ABC2, HemorrhageMeasurements, Lesion, TypeMeasurement

_FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def measure_labels(labels: np.ndarray, geometry: VolumeGeometry) -> HemorrhageMeasurements:
    """Measure a (slice, row, column) label map (0 background, 1 IPH ... 5 EDH) on its geometry."""
    labels = _checked(labels, geometry)
    if labels.max(initial=0) >= NUM_CLASSES or labels.min(initial=0) < 0:
        raise InputError(
            f"label values must lie in 0..{NUM_CLASSES - 1}; found {int(labels.min())}..{int(labels.max())}"
        )
    voxel_ml = geometry.voxel_volumes_ml()
    thickness = geometry.slice_thicknesses()
    per_type: dict[Hemorrhage, TypeMeasurement] = {}
    # find_objects on the label map gives the bounding box of each type: components are searched there only.
    for value, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        hemorrhage = Hemorrhage(value)
        mask = labels[box] == value
        per_type[hemorrhage] = _measure_mask(mask, box, hemorrhage, geometry, voxel_ml, thickness)
    return HemorrhageMeasurements(per_type)


def measure_binary(
    mask: np.ndarray, geometry: VolumeGeometry, label: Hemorrhage = Hemorrhage.IPH
) -> TypeMeasurement | None:
    """Measure every nonzero voxel as one kind of hemorrhage ("any hemorrhage", for binary ground truth).

    `label` only tags the result (TypeMeasurement needs a type); None when the mask is empty.
    """
    mask = _checked(mask, geometry) != 0
    if not mask.any():
        return None
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    return _measure_mask(
        mask[box], box, label, geometry, geometry.voxel_volumes_ml(), geometry.slice_thicknesses()
    )


def _checked(array: np.ndarray, geometry: VolumeGeometry) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != geometry.shape:
        raise InputError(f"label map shape {array.shape} does not match the image {geometry.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        if not np.all(np.mod(array, 1) == 0):
            raise InputError(f"label map must hold whole numbers, found dtype {array.dtype} with fractions")
        array = array.astype(np.int16)
    return array


def _measure_mask(
    mask: np.ndarray,
    box: tuple[slice, ...],
    hemorrhage: Hemorrhage,
    geometry: VolumeGeometry,
    voxel_ml: np.ndarray,
    thickness: np.ndarray,
) -> TypeMeasurement:
    """Measure a boolean mask cropped to `box` of the full volume."""
    components, count = ndimage.label(mask, structure=_FULL_CONNECTIVITY)
    z0 = box[0].start
    lesions = []
    for index, component_box in enumerate(ndimage.find_objects(components), start=1):
        lesion = components[component_box] == index
        first = z0 + component_box[0].start
        slices = np.arange(first, first + lesion.shape[0])
        lesions.append(_measure_lesion(lesion, slices, hemorrhage, geometry, voxel_ml, thickness))
    lesions.sort(key=lambda lesion: lesion.volume_ml, reverse=True)
    return TypeMeasurement(hemorrhage, float(sum(les.volume_ml for les in lesions)), tuple(lesions))


def _measure_lesion(
    lesion: np.ndarray,
    slices: np.ndarray,
    hemorrhage: Hemorrhage,
    geometry: VolumeGeometry,
    voxel_ml: np.ndarray,
    thickness: np.ndarray,
) -> Lesion:
    areas = lesion.sum(axis=(1, 2))
    volume_ml = float(areas @ voxel_ml[slices])
    largest = int(np.argmax(areas))
    a_mm, b_mm = greatest_diameters(lesion[largest], geometry.pixel_spacing)
    present = areas > 0
    c_mm = float(thickness[slices][present].sum())
    fraction = areas / areas[largest]
    weights = np.where(fraction >= 0.75, 1.0, np.where(fraction >= 0.25, 0.5, 0.0))
    c_kothari_mm = float(weights @ thickness[slices])
    return Lesion(
        type=hemorrhage,
        volume_ml=volume_ml,
        abc2=ABC2(a_mm=a_mm, b_mm=b_mm, c_mm=c_mm, c_kothari_mm=c_kothari_mm),
        slices=(int(slices[0]), int(slices[-1])),
    )
