"""Writes a synthetic case as a DICOM study: the target axial CT series and, in some studies, a scout, a
bone-kernel duplicate and a dose-report secondary capture (for series selection to reject).

UIDs, dates and bytes are derived from (seed, case id) only, so the same case writes the same files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from scipy.ndimage import gaussian_filter, zoom

from .. import __version__
from .options import SynthCase

IMPLEMENTATION_UID = generate_uid(entropy_srcs=["ichvol", "synth", "implementation"])
TARGET_KERNELS = ("STANDARD", "SOFT", "BRAIN", "STND")
BONE_KERNELS = ("BONE", "BONEPLUS")


@dataclass(frozen=True)
class StudyIdentity:
    study_uid: str
    series_uid: str  # the target axial series
    frame_of_reference_uid: str
    scout_uid: str
    bone_uid: str
    dose_uid: str

    @classmethod
    def of(cls, case_id: str, seed: int) -> StudyIdentity:
        def uid(*parts: str) -> str:
            return generate_uid(entropy_srcs=["ichvol-synth", str(seed), case_id, *parts])

        return cls(uid("study"), uid("series", "axial"), uid("frame-of-reference"), uid("series", "scout"),
                   uid("series", "bone"), uid("series", "dose"))


@dataclass(frozen=True)
class StudyPlan:
    """What goes into the study besides the target series, and the study-level values."""

    date: dt.date
    time: str
    scout: bool
    bone: bool
    dose: bool
    target_kernel: str
    description: str
    patient_sex: str
    patient_age: int
    accession: str

    @classmethod
    def draw(cls, case: SynthCase, case_id: str, seed: int, non_target: bool) -> StudyPlan:
        rng = np.random.default_rng([seed, 0xD1C0])
        date = dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 6 * 365)))
        seconds = int(rng.integers(0, 86400))
        thickness = case.acquisition.nominal_thickness_mm
        return cls(
            date=date,
            time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
            scout=non_target and rng.random() < 0.5,
            bone=non_target and rng.random() < 0.3,
            dose=non_target and rng.random() < 0.4,
            target_kernel=str(rng.choice(TARGET_KERNELS)),
            description=str(rng.choice(["Head {t}mm", "HEAD STD {t}", "Routine Head {t} mm", "AXIAL {t}mm"]))
            .format(t=f"{thickness:g}"),
            patient_sex=str(rng.choice(["M", "F"])),
            patient_age=int(rng.integers(25, 95)),
            accession=f"SYN{int(rng.integers(10**7, 10**8))}",
        )


def _base_dataset(case: SynthCase, case_id: str, ident: StudyIdentity, plan: StudyPlan, sop_class: str,
                  sop_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"ICHVOL_{__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    date = plan.date.strftime("%Y%m%d")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, plan.time
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = plan.time
    ds.AccessionNumber = plan.accession
    ds.Modality = "CT"
    ds.Manufacturer = case.acquisition.manufacturer
    ds.InstitutionName = "ichvol synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT HEAD WO CONTRAST"
    ds.ManufacturerModelName = case.acquisition.model
    ds.PatientName = f"SYNTH^{case_id.upper()}"
    ds.PatientID = f"SYN-{case_id}"
    birth = plan.date.replace(month=1, day=1) - dt.timedelta(days=365 * plan.patient_age)
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = plan.patient_sex
    ds.PatientAge = f"{plan.patient_age:03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic data, no real patient"
    ds.BodyPartExamined = "HEAD"
    ds.SoftwareVersions = f"ichvol-synth {__version__}"
    ds.StudyInstanceUID = ident.study_uid
    ds.StudyID = plan.accession[-6:]
    return ds


def _ct_pixels(ds: Dataset, hu: np.ndarray, signed: bool, rescale_type: bool = True) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(hu.shape[0]), int(hu.shape[1])
    ds.BitsAllocated = 16
    if signed:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        pixels = hu.astype("<i2")
    else:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        pixels = np.clip(hu.astype(np.int32) + 1024, 0, 4095).astype("<u2")
    if rescale_type:
        ds.RescaleType = "HU"
    ds.PixelData = pixels.tobytes()


def _ct_common(ds: Dataset, case: SynthCase, ident: StudyIdentity) -> None:
    acq = case.acquisition
    ds.FrameOfReferenceUID = ident.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.KVP = f"{acq.kvp:g}"
    ds.XRayTubeCurrent = acq.tube_current_ma
    ds.ExposureTime = 1000
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = f"{acq.reconstruction_diameter_mm:.3f}"
    ds.GantryDetectorTilt = f"{acq.tilt_degrees:g}"
    ds.RotationDirection = "CW"


def _ds_number(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _axial_series(case: SynthCase, case_id: str, ident: StudyIdentity, plan: StudyPlan, folder: Path,
                  bone: bool) -> list[Path]:
    g = case.geometry
    series_uid = ident.bone_uid if bone else ident.series_uid
    series_number = 3 if bone else 2
    hu = case.hu
    if bone:  # a sharp kernel: edge enhancement and more noise
        rng = np.random.default_rng([case.seed, 0xB0E])
        soft = gaussian_filter(hu.astype(np.float32), sigma=(0, 1.2, 1.2))
        sharp = hu + 1.2 * (hu - soft) + rng.normal(0, 18, hu.shape).astype(np.float32)
        hu = np.clip(np.rint(sharp), -1024, 3071).astype(np.int16)
    n = g.shape[0]
    iop = [_ds_number(v + 0.0) for v in (*g.row_cosine, *g.col_cosine)]
    paths = []
    for k in range(n):
        instance = n - k if case.acquisition.instances_from_top else k + 1
        sop_uid = generate_uid(entropy_srcs=["ichvol-synth", str(case.seed), case_id, series_uid, str(k)])
        ds = _base_dataset(case, case_id, ident, plan, CTImageStorage, sop_uid)
        _ct_common(ds, case, ident)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = f"{plan.description} Bone" if bone else plan.description
        ds.ConvolutionKernel = BONE_KERNELS[case.seed % 2] if bone else plan.target_kernel
        ds.InstanceNumber = instance
        ds.ImagePositionPatient = [_ds_number(v) for v in g.positions[k]]
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = [_ds_number(v) for v in g.pixel_spacing]
        ds.SliceThickness = _ds_number(case.acquisition.nominal_thickness_mm)
        ds.SliceLocation = _ds_number(float(g.slice_offsets()[k]))
        ds.PatientOrientation = ""
        if bone:
            ds.WindowCenter, ds.WindowWidth = "500", "2500"
        else:
            ds.WindowCenter, ds.WindowWidth = "40", "80"
        ds.WindowCenterWidthExplanation = "BONE" if bone else "BRAIN"
        _ct_pixels(ds, hu[k], case.acquisition.signed_pixels)
        path = folder / f"s{series_number:03d}_i{instance:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _scout(case: SynthCase, case_id: str, ident: StudyIdentity, plan: StudyPlan, folder: Path) -> Path:
    """A lateral localizer: attenuation summed across the head, 1 frame, sagittal orientation."""
    g = case.geometry
    att = np.clip(case.hu.astype(np.float32) + 1000.0, 0, None).sum(axis=2) * g.pixel_spacing[1]  # (slices, rows)
    att = att[::-1]  # top row = most superior slice
    z = g.positions[:, 2]
    rows = cols = 512
    z_extent = float(z.max() - z.min()) + 80.0
    y_extent = g.rows * g.pixel_spacing[0]
    image = np.zeros((rows, cols), np.float32)
    band = int(round(rows * (z_extent - 80.0) / z_extent))
    scaled = zoom(att, (max(band, 2) / att.shape[0], cols / att.shape[1]), order=1)
    top = int(round(rows * 40.0 / z_extent))
    image[top:top + scaled.shape[0]] = scaled[: rows - top]
    image = image / max(float(image.max()), 1.0) * 2500.0 - 1000.0
    hu = np.clip(np.rint(image), -1024, 3071).astype(np.int16)

    sop_uid = generate_uid(entropy_srcs=["ichvol-synth", str(case.seed), case_id, ident.scout_uid, "0"])
    ds = _base_dataset(case, case_id, ident, plan, CTImageStorage, sop_uid)
    _ct_common(ds, case, ident)
    ds.GantryDetectorTilt = "0"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesInstanceUID = ident.scout_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Scout"
    ds.ConvolutionKernel = plan.target_kernel
    ds.InstanceNumber = 1
    y0 = float(g.positions[0, 1])
    ds.ImagePositionPatient = [_ds_number(0.0), _ds_number(y0), _ds_number(float(z.max()) + 40.0)]
    ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
    ds.PixelSpacing = [_ds_number(z_extent / rows), _ds_number(y_extent / cols)]
    ds.SliceThickness = "1"
    ds.PatientOrientation = ""
    ds.WindowCenter, ds.WindowWidth = "500", "2000"
    _ct_pixels(ds, hu, case.acquisition.signed_pixels, rescale_type=False)
    path = folder / "s001_i0001.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _dose_report(case: SynthCase, case_id: str, ident: StudyIdentity, plan: StudyPlan, folder: Path) -> Path:
    """A dose summary screen as a Secondary Capture image (rendered text)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.12, 5.12), dpi=100, facecolor="black")
    lines = ["Dose Report", "", f"Patient: SYNTH^{case_id.upper()}", "Series  Type     CTDIvol  DLP",
             f"2       Helical  {40 + case.seed % 30:.2f}    {700 + case.seed % 400:.1f}",
             "Total Exam DLP: " + f"{700 + case.seed % 400:.1f} mGy-cm"]
    for i, line in enumerate(lines):
        fig.text(0.05, 0.92 - 0.07 * i, line, color="white", family="monospace", fontsize=12)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    gray = rgba[..., :3].mean(axis=2).astype(np.uint8)

    sop_uid = generate_uid(entropy_srcs=["ichvol-synth", str(case.seed), case_id, ident.dose_uid, "0"])
    ds = _base_dataset(case, case_id, ident, plan, SecondaryCaptureImageStorage, sop_uid)
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.ConversionType = "WSD"
    ds.SeriesInstanceUID = ident.dose_uid
    ds.SeriesNumber = 999
    ds.SeriesDescription = "Dose Report"
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(gray.shape[0]), int(gray.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = gray.tobytes()
    path = folder / "s999_i0001.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom_study(case: SynthCase, folder: Path, case_id: str, seed: int,
                      non_target_series: bool = True) -> list[Path]:
    """Write the study into `folder` (created); returns the files, target series first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ident = StudyIdentity.of(case_id, seed)
    plan = StudyPlan.draw(case, case_id, seed, non_target_series)
    paths = _axial_series(case, case_id, ident, plan, folder, bone=False)
    if plan.scout:
        paths.append(_scout(case, case_id, ident, plan, folder))
    if plan.bone:
        paths.extend(_axial_series(case, case_id, ident, plan, folder, bone=True))
    if plan.dose:
        paths.append(_dose_report(case, case_id, ident, plan, folder))
    return paths
