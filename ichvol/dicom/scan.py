"""Read the headers of every DICOM file under a folder and group them by series.

Only headers are read (pixel data is decoded later, for the chosen series only). Files that are not DICOM
are skipped and listed with the reason, so a folder with a README or a DICOMDIR next to the images works.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import MediaStorageDirectoryStorage

from ..errors import InputError, NotDicomError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Instance:
    """One DICOM file: where it is and its header (no pixel data)."""

    path: Path
    header: Dataset

    @property
    def number_of_frames(self) -> int:
        return int(self.header.get("NumberOfFrames", 1) or 1)


PART_SEPARATOR = "#"  # UIDs hold only digits and dots


def series_uid_of(key: str) -> str:
    """The Series Instance UID of a key made by `SeriesScan.key`."""
    return key.split(PART_SEPARATOR, 1)[0]


@dataclass(eq=False)
class SeriesScan:
    """The instances of one series, in the order the files were found (not yet sorted)."""

    uid: str
    instances: list[Instance] = field(default_factory=list)
    # A series that mixes stacks (orientations, kernels, localizer and axial) is split into parts
    # (ichvol.dicom.parts); `part` counts from 1 and `stack` says what sets this part apart.
    part: int = 1
    parts: int = 1
    stack: str = ""

    @property
    def key(self) -> str:
        """The series UID, or "UID#part" for a part of a mixed series (`series_uid_of` reads the UID back)."""
        return self.uid if self.parts == 1 else f"{self.uid}{PART_SEPARATOR}{self.part}"

    @property
    def first(self) -> Dataset:
        return self.instances[0].header

    @property
    def sop_class_uid(self) -> str:
        return str(self.first.get("SOPClassUID", ""))

    @property
    def modality(self) -> str:
        return str(self.first.get("Modality", ""))

    @property
    def description(self) -> str:
        return str(self.first.get("SeriesDescription", ""))

    @property
    def series_number(self) -> int | None:
        value = self.first.get("SeriesNumber")
        return int(value) if value not in (None, "") else None

    def label(self) -> str:
        """A short readable name for messages (series number and description; no patient data)."""
        number = self.series_number
        text = f"#{number}" if number is not None else self.uid
        text = f"{text} '{self.description}'" if self.description else text
        return text if self.parts == 1 else f"{text} part {self.part} of {self.parts} ({self.stack})"


@dataclass(eq=False)
class StudyScan:
    """Every series found under a folder, and the files that were skipped with the reason."""

    folder: Path
    series: dict[str, SeriesScan] = field(default_factory=dict)
    skipped: dict[Path, str] = field(default_factory=dict)

    @property
    def study_instance_uids(self) -> set[str]:
        return {str(s.first.get("StudyInstanceUID", "")) for s in self.series.values()}


def read_study(folder: Path) -> StudyScan:
    """Read the header of every file under `folder` (recursively) and group them by SeriesInstanceUID.

    Raises NotDicomError when the folder holds no DICOM image at all.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such file or folder")
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    scan = StudyScan(folder)
    seen: dict[str, Path] = {}
    for path in files:
        header, reason = _read_header(path)
        if header is None:
            scan.skipped[path] = reason
            continue
        sop_uid = str(header.get("SOPInstanceUID", ""))
        if sop_uid and sop_uid in seen:
            scan.skipped[path] = f"same SOPInstanceUID as {seen[sop_uid].name} (a copy of the same instance)"
            continue
        seen[sop_uid] = path
        uid = str(header.get("SeriesInstanceUID", ""))
        scan.series.setdefault(uid, SeriesScan(uid)).instances.append(Instance(path, header))
    if not scan.series:
        raise NotDicomError(f"{folder}: no DICOM instances found ({len(files)} files looked at)")
    logger.info("%s: %d series in %d files (%d skipped)", folder, len(scan.series), len(files),
                len(scan.skipped))
    return scan


def _read_header(path: Path) -> tuple[Dataset | None, str]:
    """The header of a DICOM instance, or None and why the file is not one."""
    if path.name.upper() == "DICOMDIR":
        return None, "DICOMDIR (a media index, not an image)"
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        # Old files may lack the 128-byte preamble; accept them when they start with a group 0008 tag.
        if not _starts_like_dataset(path):
            return None, "not a DICOM file"
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception as exc:  # a damaged file can fail anywhere in the parser
            return None, f"not a readable DICOM file ({type(exc).__name__})"
    except Exception as exc:
        return None, f"not a readable DICOM file ({type(exc).__name__})"
    meta_class = str(getattr(header, "file_meta", {}).get("MediaStorageSOPClassUID", ""))
    if MediaStorageDirectoryStorage in (str(header.get("SOPClassUID", "")), meta_class):
        return None, "DICOMDIR (a media index, not an image)"
    if "SOPInstanceUID" not in header or "SOPClassUID" not in header:
        return None, "DICOM without SOP class or instance UID"
    return header, ""


def _starts_like_dataset(path: Path) -> bool:
    with open(path, "rb") as handle:
        start = handle.read(4)
    return start[:2] in (b"\x08\x00", b"\x00\x08") and len(start) == 4
