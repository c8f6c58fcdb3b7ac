"""What a synthetic case may contain (SynthOptions) and what one generated case is (SynthCase)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import VolumeGeometry
from ..labels import Hemorrhage


@dataclass(frozen=True)
class SynthOptions:
    """Choices for a synthetic dataset.

    `slices` and `size` make small cases for tests: a fixed number of slices around the ventricles and a
    square `size` x `size` matrix over the same field of view (so coarser pixels). Leave them None for
    realistic cases (20-47 slices, 512 x 512, sometimes 586 columns).
    """

    types: tuple[Hemorrhage, ...] = tuple(Hemorrhage)
    p_no_hemorrhage: float = 0.1
    allow_tilt: bool = True
    non_target_series: bool = True
    lesion_masks: Path | None = None
    slices: int | None = None
    size: int | None = None
    # Each slice averages the head over its nominal thickness (three sub-slices), as a real detector row does:
    # skull cut obliquely at the vertex and the skull base brightens the brain next to it. Three times slower.
    slab_partial_volume: bool = False
    # Up to this multiple of a modern scanner's skull halo (see case.add_noise); 1.0 keeps every seed's case.
    skull_halo_max: float = 1.0

    def __post_init__(self) -> None:
        if not 1.0 <= self.skull_halo_max <= 4.0:
            raise InputError(f"skull_halo_max (--skull-halo-max) must lie in [1, 4], got {self.skull_halo_max}")
        if not 0.0 <= self.p_no_hemorrhage <= 1.0:
            raise InputError(f"p_no_hemorrhage must lie in [0, 1], got {self.p_no_hemorrhage}")
        if self.slices is not None and not 2 <= self.slices <= 400:
            raise InputError(f"slices must be between 2 and 400, got {self.slices}")
        if self.size is not None and not 32 <= self.size <= 1024:
            raise InputError(f"size must be between 32 and 1024 pixels, got {self.size}")
        if self.lesion_masks is not None and not Path(self.lesion_masks).is_dir():
            raise InputError(f"lesion mask folder {self.lesion_masks} does not exist")


@dataclass(frozen=True)
class Acquisition:
    """How the synthetic scanner wrote the series (kept for the DICOM writer)."""

    tilt_degrees: float  # signed GantryDetectorTilt
    nominal_thickness_mm: float
    signed_pixels: bool  # True: signed pixels with intercept 0; False: unsigned with intercept -1024
    reconstruction_diameter_mm: float
    manufacturer: str
    model: str
    kvp: float
    tube_current_ma: int
    instances_from_top: bool  # InstanceNumber 1 at the top slice (as many scanners do) or at the bottom


@dataclass(eq=False)
class SynthCase:
    hu: np.ndarray  # int16 (slice, row, column)
    labels: np.ndarray  # uint8, 0 background, Hemorrhage values
    geometry: VolumeGeometry
    truth: dict  # the sidecar content (truth/<case>.json) without the UIDs, which the writer adds
    acquisition: Acquisition
    seed: int = 0
