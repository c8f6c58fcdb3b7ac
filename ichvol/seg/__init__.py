"""DICOM Segmentation (SEG) of hemorrhage label maps."""

from .writer import build_segmentation, segment_tracking_uid

__all__ = ["build_segmentation", "segment_tracking_uid"]
