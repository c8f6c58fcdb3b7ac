"""A CT volume in Hounsfield units with its geometry and, when it came from DICOM, its source headers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom import Dataset

from .geometry import VolumeGeometry


@dataclass(eq=False)
class CTImage:
    hu: np.ndarray  # (slices, rows, columns), Hounsfield units (int16 or float32)
    geometry: VolumeGeometry
    # Headers of the source instances in slice order, pixel data removed; empty for a NIfTI image.
    # For an enhanced (multi-frame) CT it holds the one dataset and `frame_numbers` the frame of each slice.
    datasets: tuple[Dataset, ...] = field(default_factory=tuple)
    frame_numbers: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.hu.shape != self.geometry.shape:
            raise ValueError(f"pixel array shape {self.hu.shape} does not match geometry {self.geometry.shape}")

    @property
    def study_instance_uid(self) -> str | None:
        return str(self.datasets[0].StudyInstanceUID) if self.datasets else None

    @property
    def series_instance_uid(self) -> str | None:
        return str(self.datasets[0].SeriesInstanceUID) if self.datasets else None
