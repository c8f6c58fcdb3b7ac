"""The image planes (frames) of an instance: position, orientation, spacing and rescale of each.

A classic CT Image holds one plane described by top-level attributes. An Enhanced CT Image holds many,
described by functional groups: a per-frame group overrides the shared one (PS3.3 C.7.6.16).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from .scan import Instance


@dataclass(frozen=True, eq=False)
class Frame:
    """One image plane. `number` is the 1-based frame number in a multi-frame instance, None otherwise."""

    instance: Instance
    number: int | None
    position: np.ndarray | None  # ImagePositionPatient (3,)
    orientation: np.ndarray | None  # ImageOrientationPatient (6,)
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float

    @property
    def rows(self) -> int:
        return int(self.instance.header.get("Rows", 0) or 0)

    @property
    def columns(self) -> int:
        return int(self.instance.header.get("Columns", 0) or 0)

    def name(self) -> str:
        """A readable reference to this plane in messages (file name and frame, or instance number)."""
        text = self.instance.path.name
        number = self.instance.header.get("InstanceNumber")
        if number not in (None, ""):
            text += f" (instance {number})"
        return text + (f" frame {self.number}" if self.number is not None else "")


def frames_of(instance: Instance) -> list[Frame]:
    header = instance.header
    if "PerFrameFunctionalGroupsSequence" in header or "SharedFunctionalGroupsSequence" in header:
        return [_enhanced_frame(instance, i) for i in range(instance.number_of_frames)]
    return [
        Frame(
            instance=instance,
            number=None,
            position=_vector(header.get("ImagePositionPatient"), 3),
            orientation=_vector(header.get("ImageOrientationPatient"), 6),
            pixel_spacing=_spacing(header.get("PixelSpacing")),
            slope=float(header.get("RescaleSlope", 1) or 1),
            intercept=float(header.get("RescaleIntercept", 0) or 0),
        )
    ]


def functional_group(header: Dataset, index: int, keyword: str) -> Dataset | None:
    """The first item of a functional group macro of frame `index` (0-based): per-frame, else shared."""
    for sequence_keyword, item_index in (("PerFrameFunctionalGroupsSequence", index),
                                         ("SharedFunctionalGroupsSequence", 0)):
        groups = header.get(sequence_keyword)
        if groups and item_index < len(groups):
            macro = groups[item_index].get(keyword)
            if macro:
                return macro[0]
    return None


def _enhanced_frame(instance: Instance, index: int) -> Frame:
    header = instance.header
    position = functional_group(header, index, "PlanePositionSequence")
    orientation = functional_group(header, index, "PlaneOrientationSequence")
    measures = functional_group(header, index, "PixelMeasuresSequence")
    rescale = functional_group(header, index, "PixelValueTransformationSequence")
    return Frame(
        instance=instance,
        number=index + 1,
        position=_vector(position.get("ImagePositionPatient") if position else None, 3),
        orientation=_vector(orientation.get("ImageOrientationPatient") if orientation else None, 6),
        pixel_spacing=_spacing(measures.get("PixelSpacing") if measures else None),
        slope=float(rescale.get("RescaleSlope", 1) or 1) if rescale else 1.0,
        intercept=float(rescale.get("RescaleIntercept", 0) or 0) if rescale else 0.0,
    )


def _vector(value, length: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        array = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (length,) and np.all(np.isfinite(array)) else None


def _spacing(value) -> tuple[float, float] | None:
    array = _vector(value, 2)
    if array is None or np.any(array <= 0):
        return None
    return float(array[0]), float(array[1])
