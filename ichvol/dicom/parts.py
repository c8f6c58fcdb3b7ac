"""Split a series that mixes stacks into parts, each a candidate for selection on its own.

One SeriesInstanceUID does not always mean one stack of slices. Older sequential head protocols scan the
posterior fossa and the cerebrum at two gantry tilts in one series; some scanners put the localizer, or a
second reconstruction (another kernel) at the same positions, into the axial series.

Instances are grouped by what every slice of a stack shares: orientation, image size, pixel spacing, and
whether ImageType calls it a localizer or projection. A group with two slices at one position is then split
by kernel and ImageType. Nothing else is split on: a stack may change slice thickness, spacing or even kernel
along its length (2.5 mm through the posterior fossa, 5 mm above), and the volume keeps the real positions.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np
from pydicom import Dataset

from .frames import Frame, frames_of
from .kernels import kernel_name
from .scan import Instance, SeriesScan, StudyScan
from .stack import ORIENTATION_TOLERANCE, SPACING_TOLERANCE, axial_angle_degrees, slice_normal

# ImageType values of images that are not a slice stack to segment.
NOT_A_STACK = {"LOCALIZER": "localizer (scout)", "MIP": "maximum intensity projection",
               "MINIP": "minimum intensity projection", "PROJECTION IMAGE": "projection image",
               "VOLUME RENDERING": "volume rendering", "VR": "volume rendering", "CURVED": "curved reformat"}
SAME_POSITION_MM = 0.01


def series_parts(scan: StudyScan) -> dict[str, SeriesScan]:
    """Every stack of the study by key: a series that is one stack under its UID, the parts of a mixed one
    under "UID#1", "UID#2", ... (largest part first)."""
    parts: dict[str, SeriesScan] = {}
    for series in scan.series.values():
        for part in split_series(series):
            parts[part.key] = part
    return parts


def split_series(series: SeriesScan) -> list[SeriesScan]:
    """The series itself when its instances form one stack; otherwise its parts, largest first."""
    groups = _group(series.instances, _plane_key, _same_plane)
    groups = [split for group in groups
              for split in (_group(group, _reconstruction_key) if _repeats_a_position(group) else [group])]
    if len(groups) == 1:
        return [series]
    groups.sort(key=lambda members: -sum(i.number_of_frames for i in members))
    return [SeriesScan(series.uid, members, part=number, parts=len(groups), stack=_describe(members))
            for number, members in enumerate(groups, start=1)]


def header_image_type(header: Dataset) -> list[str]:
    value = header.get("ImageType")
    values = [value] if isinstance(value, str) else list(value or [])
    return [str(v).strip().upper() for v in values]


def _group(instances: list[Instance], key: Callable, same: Callable = None) -> list[list[Instance]]:
    same = same or (lambda a, b: a == b)
    groups: list[tuple[Hashable, list[Instance]]] = []
    for instance in instances:
        value = key(instance)
        for group_value, members in groups:
            if same(group_value, value):
                members.append(instance)
                break
        else:
            groups.append((value, [instance]))
    return [members for _, members in groups]


def _first_frame(instance: Instance) -> Frame:
    return frames_of(instance)[0]


def _plane_key(instance: Instance) -> tuple:
    frame = _first_frame(instance)
    kind = next((word for word in header_image_type(instance.header) if word in NOT_A_STACK), "")
    return frame.orientation, (frame.rows, frame.columns), frame.pixel_spacing, kind


def _same_plane(a: tuple, b: tuple) -> bool:
    (orientation_a, size_a, spacing_a, kind_a), (orientation_b, size_b, spacing_b, kind_b) = a, b
    return ((size_a, kind_a) == (size_b, kind_b)
            and _close(orientation_a, orientation_b, lambda x, y: np.abs(x - y), ORIENTATION_TOLERANCE)
            and _close(spacing_a, spacing_b, lambda x, y: np.abs(x / y - 1), SPACING_TOLERANCE))


def _close(a, b, difference: Callable, tolerance: float) -> bool:
    if a is None or b is None:
        return a is None and b is None  # a missing attribute is reported when the stack is checked
    return float(difference(np.asarray(a, float), np.asarray(b, float)).max()) <= tolerance


def _reconstruction_key(instance: Instance) -> tuple:
    return kernel_name(instance.header), tuple(header_image_type(instance.header))


def _repeats_a_position(instances: list[Instance]) -> bool:
    frames = [frame for instance in instances for frame in frames_of(instance)]
    if any(f.position is None or f.orientation is None for f in frames):
        return False
    offsets = np.sort([f.position @ slice_normal(frames[0].orientation) for f in frames])
    return bool((np.diff(offsets) <= SAME_POSITION_MM).any())


def _describe(instances: list[Instance]) -> str:
    """What a part is, in words (no patient data): image count, tilt, kernel, ImageType."""
    frame = _first_frame(instances[0])
    words = [f"{sum(i.number_of_frames for i in instances)} images"]
    if frame.orientation is not None:
        words.append(f"slice normal {axial_angle_degrees(frame.orientation):.1f} degrees from z")
    kernel = kernel_name(instances[0].header)
    words.append(f"kernel {kernel}" if kernel else "no kernel")
    words.append("ImageType " + ("/".join(header_image_type(instances[0].header)) or "none"))
    return ", ".join(words)
