"""Hemorrhage measures: volume from the mask and the automated ABC/2 (Tada) formula."""

from .results import ABC2, HemorrhageMeasurements, Lesion, TypeMeasurement

__all__ = ["ABC2", "HemorrhageMeasurements", "Lesion", "TypeMeasurement"]
