"""Hemorrhage measures: volume from the mask and the automated ABC/2 (Tada) formula."""

from .diameters import greatest_diameters
from .results import ABC2, HemorrhageMeasurements, Lesion, TypeMeasurement
from .volumes import measure_binary, measure_labels

__all__ = [
    "ABC2",
    "HemorrhageMeasurements",
    "Lesion",
    "TypeMeasurement",
    "greatest_diameters",
    "measure_binary",
    "measure_labels",
]
