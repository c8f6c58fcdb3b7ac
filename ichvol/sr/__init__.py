"""DICOM Structured Report (Comprehensive 3D SR, TID 1500) of hemorrhage measurements."""

from .report import build_report

__all__ = ["build_report"]
