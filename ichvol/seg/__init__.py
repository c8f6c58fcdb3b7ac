"""DICOM Segmentation (SEG) of hemorrhage label maps: written from a label map, read back into one."""

from .reader import (
    GENERIC_HEMORRHAGE_TYPE,
    find_segmentation,
    read_segment_types,
    read_segmentation,
    segment_types,
)
from .writer import build_segmentation, segment_tracking_uid

__all__ = [
    "GENERIC_HEMORRHAGE_TYPE",
    "build_segmentation",
    "find_segmentation",
    "read_segment_types",
    "read_segmentation",
    "segment_tracking_uid",
    "segment_types",
]
