"""Helpers of the SEG / SR / encode tests: small real CT series made with pydicom, and the validators
(dciodvfy, dcmqi's segimage2itkimage) run as subprocesses."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ichvol.geometry import VolumeGeometry
from ichvol.image import CTImage


def ct_series(
    n_slices: int = 8,
    rows: int = 48,
    columns: int = 40,
    pixel_spacing: tuple[float, float] = (0.5, 0.45),
    gaps_mm: list[float] | None = None,
    tilt_degrees: float = 0.0,
    seed: int = 0,
    hu: np.ndarray | None = None,
    study_uid: str | None = None,
) -> list[Dataset]:
    """An axial CT series (one Dataset per slice, with pixel data), in slice order.

    `gaps_mm` are the distances between consecutive slices along the normal (default 5 mm each); a gantry
    tilt shifts each slice along the column direction (posterior) by its offset x tan(tilt), as scanners
    write it: the orientation stays axial, the stack is sheared. `hu`: the (slice, row, column) HU values
    (default: seeded noise of soft-tissue density).
    """
    rng = np.random.default_rng(seed)
    gaps = np.asarray(gaps_mm if gaps_mm is not None else [5.0] * (n_slices - 1), dtype=float)
    offsets = np.concatenate([[0.0], np.cumsum(gaps)])
    if hu is None:
        hu = rng.integers(-20, 80, size=(n_slices, rows, columns), dtype=np.int16)
    study_uid, series_uid, frame_uid = study_uid or generate_uid(), generate_uid(), generate_uid()
    now = datetime(2026, 1, 2, 3, 4, 5)
    shift = np.tan(np.radians(tilt_degrees))
    datasets = []
    for index, offset in enumerate(offsets):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = "Test^Encode"
        ds.PatientID = "ENC001"
        ds.PatientBirthDate = "19500101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = now.strftime("%Y%m%d")
        ds.StudyTime = now.strftime("%H%M%S")
        ds.StudyID = "1"
        ds.AccessionNumber = "ACC1"
        ds.ReferringPhysicianName = ""
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2
        ds.SeriesDescription = "Head"
        ds.Manufacturer = "ichvol-tests"
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
        ds.AcquisitionNumber = 1
        ds.KVP = 120
        ds.PatientPosition = "HFS"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [
            -10.0,
            round(-12.0 + float(offset * shift), 5),
            round(-30.0 + float(offset), 5),
        ]
        ds.SliceThickness = float(gaps.mean()) if gaps.size else 5.0
        ds.GantryDetectorTilt = tilt_degrees
        ds.PixelSpacing = list(pixel_spacing)
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 80
        ds.PixelData = np.asarray(hu[index], dtype=np.int16).tobytes()
        datasets.append(ds)
    return datasets


def write_series(datasets: list[Dataset], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for ds in datasets:
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    return folder


def ct_image(datasets: list[Dataset]) -> CTImage:
    """The CTImage of a classic series made by ct_series (already in slice order)."""
    first = datasets[0]
    iop = np.asarray(first.ImageOrientationPatient, dtype=float)
    geometry = VolumeGeometry(
        positions=np.asarray([ds.ImagePositionPatient for ds in datasets], dtype=float),
        row_cosine=iop[:3],
        col_cosine=iop[3:],
        pixel_spacing=(float(first.PixelSpacing[0]), float(first.PixelSpacing[1])),
        rows=int(first.Rows),
        columns=int(first.Columns),
    )
    hu = np.stack([ds.pixel_array for ds in datasets]).astype(np.int16)
    return CTImage(hu, geometry, tuple(datasets))


def ellipsoid_labels(shape: tuple[int, int, int], center, radii, value: int, labels=None) -> np.ndarray:
    """Add an axis-aligned ellipsoid (in voxel units) of `value` to a label map."""
    labels = np.zeros(shape, dtype=np.uint8) if labels is None else labels
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    inside = sum(((c - c0) / r) ** 2 for c, c0, r in zip((z, y, x), center, radii, strict=True)) <= 1.0
    labels[inside] = value
    return labels


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """Errors and warnings dciodvfy reports on a file (skips the calling test when it is not installed)."""
    import pytest

    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run([tool, "-new", str(path)], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    return errors, warnings


def dcmqi_voxel_counts(seg_path: Path, out_dir: Path) -> dict[str, int]:
    """Decode a SEG with dcmqi's segimage2itkimage; the voxel count of each segment, by segment label."""
    import json

    import pytest
    import SimpleITK as sitk

    tool = shutil.which("segimage2itkimage")
    if tool is None:
        pytest.skip("segimage2itkimage (PyPI dcmqi) is not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        [
            tool,
            "--inputDICOM",
            str(seg_path),
            "--outputDirectory",
            str(out_dir),
            "--outputType",
            "nrrd",
            "--prefix",
            "seg",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    meta = json.loads((out_dir / "seg-meta.json").read_text())
    counts = {}
    for index, attributes in enumerate(meta["segmentAttributes"], start=1):
        if not (out_dir / f"seg-{index}.nrrd").is_file():  # dcmqi can fail and still exit 0
            pytest.fail(f"segimage2itkimage wrote no seg-{index}.nrrd:\n{run.stdout}\n{run.stderr}")
        for segment in attributes:
            volume = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / f"seg-{index}.nrrd")))
            counts[segment["SegmentLabel"]] = int(np.count_nonzero(volume == segment["labelID"]))
    return counts


def read(path: Path) -> Dataset:
    return pydicom.dcmread(path)
