"""Small DICOM studies written with pydicom for the reading tests (B): one series per SeriesSpec."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

STUDY_UID = generate_uid(prefix="1.2.826.0.1.3680043.10.1138.")
FRAME_OF_REFERENCE_UID = generate_uid(prefix="1.2.826.0.1.3680043.10.1138.")
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def tilted_orientation(degrees: float) -> tuple[float, ...]:
    """Row cosine x; column cosine tipped out of the axial plane, as GE/Philips write gantry tilt."""
    t = np.radians(degrees)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(-np.sin(t)))


@dataclass
class SeriesSpec:
    slices: int = 10
    rows: int = 64
    columns: int = 64
    pixel_spacing: tuple[float, float] = (0.5, 0.6)
    offsets_mm: list[float] | None = None  # along the table (z), default 5 mm steps
    orientation: tuple[float, ...] = AXIAL
    step_direction: tuple[float, float, float] = (0.0, 0.0, 1.0)  # the table (or reformat) step
    slope: float = 1.0
    intercept: float = -1024.0
    signed: bool = False
    kernel: str = "STANDARD"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    sop_class: str = CTImageStorage
    modality: str = "CT"
    series_number: int = 2
    description: str = "HEAD"
    series_uid: str = field(default_factory=lambda: generate_uid(prefix="1.2.826.0.1.3680043.10.1138."))
    pixel_data: bool = True

    def offsets(self) -> np.ndarray:
        if self.offsets_mm is not None:
            return np.asarray(self.offsets_mm, dtype=float)
        return np.arange(self.slices) * 5.0

    def positions(self) -> np.ndarray:
        """Positions: the table moves along z; with a tilted orientation the grid is sheared."""
        origin = np.array([-16.0, -20.0, 0.0])
        return origin[None, :] + self.offsets()[:, None] * np.array(self.step_direction)[None, :]

    def hu(self) -> np.ndarray:
        """A known HU volume: the slice index in the first row, a gradient elsewhere."""
        n = len(self.offsets())
        z, y, x = np.mgrid[:n, : self.rows, : self.columns]
        volume = (x + 2 * y + 10 * z - 40).astype(np.float64)
        volume[:, 0, 0] = -1000 + z[:, 0, 0]
        return volume


def base_dataset(spec: SeriesSpec, sop_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = spec.sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = spec.sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = spec.series_uid
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
    ds.Modality = spec.modality
    ds.PatientID = "TEST"
    ds.PatientName = "Test^Reading"
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = spec.description
    ds.ImageType = list(spec.image_type)
    ds.ConvolutionKernel = spec.kernel
    ds.Rows, ds.Columns = spec.rows, spec.columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(spec.signed)
    return ds


def stored(spec: SeriesSpec, hu: np.ndarray) -> np.ndarray:
    values = np.round((hu - spec.intercept) / spec.slope)
    return values.astype(np.int16 if spec.signed else np.uint16)


def write_series(folder: Path, spec: SeriesSpec, hu: np.ndarray | None = None, seed: int = 0) -> list[Path]:
    """One file per slice with InstanceNumber running against the position, in shuffled file-name order."""
    folder.mkdir(parents=True, exist_ok=True)
    hu = spec.hu() if hu is None else hu
    positions = spec.positions()
    n = len(positions)
    names = np.random.default_rng(seed).permutation(n)
    paths = []
    for i in range(n):
        ds = base_dataset(spec, generate_uid(prefix="1.2.826.0.1.3680043.10.1138."))
        ds.InstanceNumber = n - i
        ds.ImagePositionPatient = [float(v) for v in positions[i]]
        ds.ImageOrientationPatient = list(spec.orientation)
        ds.PixelSpacing = list(spec.pixel_spacing)
        ds.SliceThickness = 99.0  # deliberately wrong: spacing must come from positions
        ds.RescaleSlope, ds.RescaleIntercept = spec.slope, spec.intercept
        if spec.pixel_data:
            ds.PixelData = stored(spec, hu[i]).tobytes()
        path = folder / f"{spec.series_uid[-6:]}_{names[i]:03d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced(path: Path, spec: SeriesSpec, frame_order: list[int]) -> Path:
    """An Enhanced CT Image (one multi-frame file); frames stored in `frame_order` of the slices."""
    spec = replace(spec, sop_class=EnhancedCTImageStorage)
    hu = spec.hu()
    positions = spec.positions()
    ds = base_dataset(spec, generate_uid(prefix="1.2.826.0.1.3680043.10.1138."))
    del ds.ConvolutionKernel
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = len(frame_order)
    ds.InstanceNumber = 1
    shared = Dataset()
    orientation, measures, rescale, reconstruction = Dataset(), Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = list(spec.orientation)
    measures.PixelSpacing = list(spec.pixel_spacing)
    measures.SliceThickness = 5.0
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = spec.slope, spec.intercept, "HU"
    reconstruction.ConvolutionKernel = spec.kernel
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    shared.PixelValueTransformationSequence = [rescale]
    shared.CTReconstructionSequence = [reconstruction]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for index in frame_order:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [float(v) for v in positions[index]]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = stored(spec, hu[frame_order]).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_secondary_capture(folder: Path, description: str = "Dose Report",
                            sop_class: str = SecondaryCaptureImageStorage, modality: str = "CT") -> Path:
    """A one-image non-CT object (a dose page by default; also SR or SEG headers with their class)."""
    spec = SeriesSpec(sop_class=sop_class, modality=modality, series_number=999,
                      description=description, image_type=("DERIVED", "SECONDARY", "OTHER"))
    ds = base_dataset(spec, generate_uid(prefix="1.2.826.0.1.3680043.10.1138."))
    ds.PixelData = np.zeros((spec.rows, spec.columns), np.uint16).tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{modality}_{spec.series_uid[-8:]}"
    ds.save_as(path, enforce_file_format=True)
    return path
