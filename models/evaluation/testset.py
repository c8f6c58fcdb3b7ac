"""The test-set layout that `ichvol evaluate` reads, checked in full before any prediction runs.

    DIR/images/<case>.nii.gz   CT in HU
    DIR/labels/<case>.nii.gz   label map on the same grid: multi-class (0 background, 1 IPH, 2 IVH, 3 SAH,
                               4 SDH, 5 EDH) or binary (1 = hemorrhage of unknown type)
    DIR/dataset.json           optional:
        {
          "labels": "multiclass" | "binary",          # optional, overrides the detection below
                                                      # (an nnU-Net style {"name": value} table is ignored)
          "cases": {"case0001": {"type": "IPH+IVH"},  # "+"-joined type names, or "none"
                    "case0002": {"type": "SAH"}}
        }

Or, as ground truth usually comes from a PACS, one folder per case holding a DICOM study with its CT series
and one DICOM SEG of it (the layout `ichvol train` also reads): DIR/<case>/..., and the same optional
DIR/dataset.json. The CT is read as the service reads it (series selection, tilt kept) and the SEG's segments
become types as ichvol.seg.read_segmentation says; a SEG that names hemorrhage only generically gives binary
labels.

Binary or multi-class is decided for the whole set: binary when no label file holds a value above 1 and
dataset.json does not say "multiclass". A case's type comes from dataset.json when given, else (multi-class
only) from the label values; with binary labels and no type the case is of unknown type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from ichvol.errors import InputError, NotDicomError
from ichvol.geometry import VolumeGeometry
from ichvol.image import CTImage
from ichvol.labels import NUM_CLASSES, Hemorrhage
from ichvol.nifti import read_volume

SUFFIX = ".nii.gz"
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    name: str
    image_path: Path
    label_path: Path
    declared_types: tuple[Hemorrhage, ...] | None  # from dataset.json; () means declared hemorrhage-free
    max_label: int
    # A DICOM case: image_path is the study folder, label_path the SEG, and this the CT series it is read on.
    series_uid: str | None = None

    def load(self) -> tuple[CTImage, np.ndarray, VolumeGeometry]:
        """The CT, the true label map and the label map's geometry."""
        if self.series_uid is None:
            hu, geometry = read_volume(self.image_path)
            truth, truth_geometry = read_volume(self.label_path)
            return CTImage(hu, geometry), np.asarray(truth).astype(np.uint8), truth_geometry
        from ichvol.dicom import load_ct_image  # the DICOM reader pulls in decoders: import it when needed
        from ichvol.seg import read_segmentation

        try:
            image, _ = load_ct_image(self.image_path, series_uid=self.series_uid)
            return image, read_segmentation(self.label_path, image), image.geometry
        except InputError as exc:
            raise InputError(f"case {self.name}: {exc}") from exc


@dataclass(frozen=True)
class TestSet:
    __test__ = False

    root: Path
    cases: tuple[TestCase, ...]
    binary: bool


def _case_names(folder: Path) -> set[str]:
    return {p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}")}


def _parse_types(text: object, where: str) -> tuple[Hemorrhage, ...]:
    if not isinstance(text, str):
        raise InputError(f'{where}: \'type\' must be a string such as "IPH+IVH" or "none"')
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(sorted(set(Hemorrhage.parse_list(text.replace("+", ",")))))
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from exc


def _read_dataset_json(path: Path, names: set[str]) -> tuple[str | None, dict[str, tuple[Hemorrhage, ...]]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with 'cases' and optionally 'labels'")
    labels = data.get("labels")
    if isinstance(labels, dict):  # an nnU-Net style label table: not ours, detection decides
        labels = None
    if labels not in (None, "binary", "multiclass"):
        raise InputError(f'{path}: \'labels\' must be "binary" or "multiclass", not {labels!r}')
    cases = data.get("cases", {})
    if not isinstance(cases, dict):
        raise InputError(f"{path}: 'cases' must map case names to objects")
    unknown = sorted(set(cases) - names)
    if unknown:
        raise InputError(f"{path}: names cases that have no image/label pair: {', '.join(unknown[:5])}")
    types = {}
    for name, entry in cases.items():
        if not isinstance(entry, dict):
            raise InputError(f'{path}: case {name!r} must be an object such as {{"type": "IPH"}}')
        if "type" in entry:
            types[name] = _parse_types(entry["type"], f"{path}: case {name!r}")
    return labels, types


def _load_header(path: Path) -> nib.Nifti1Image:
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises many kinds
        raise InputError(f"{path}: not a readable NIfTI file ({exc})") from exc


def _check_pair(name: str, image_path: Path, label_path: Path) -> None:
    image, label = _load_header(image_path), _load_header(label_path)
    if image.shape[:3] != label.shape[:3]:
        raise InputError(f"case {name}: image shape {image.shape} differs from label shape {label.shape}")
    if not np.allclose(image.affine, label.affine, atol=AFFINE_TOLERANCE_MM):
        raise InputError(f"case {name}: image and label lie on different grids (their affines differ)")


def _max_label(label_path: Path) -> int:
    try:
        data = np.asarray(nib.load(str(label_path)).dataobj)
    except Exception as exc:  # truncated or corrupt data behind a readable header
        raise InputError(f"{label_path}: cannot read the label data ({exc})") from exc
    if data.size == 0:
        raise InputError(f"{label_path}: empty label map")
    if np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.round(data)):
        raise InputError(f"{label_path}: label values must be whole numbers")
    low, high = int(data.min()), int(data.max())
    if low < 0 or high >= NUM_CLASSES:
        raise InputError(f"{label_path}: label values must lie in 0..{NUM_CLASSES - 1}, found {low}..{high}")
    return high


def load_testset(root: Path) -> TestSet:
    """Find and check every case of a test set; raises InputError naming what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (expected images/ and labels/ folders, or one folder per case "
                         "holding a DICOM study with its SEG)")
    images, labels = root / "images", root / "labels"
    if not images.is_dir() and not labels.is_dir():
        cases = _dicom_cases(root)
        if cases:
            return _with_dataset_json(root, cases)
    for folder in (images, labels):
        if not folder.is_dir():
            raise InputError(
                f"{root}: no {folder.name}/ folder (expected images/<case>.nii.gz and labels/<case>.nii.gz, or "
                "one folder per case holding a DICOM study with its SEG)"
            )
    image_names, label_names = _case_names(images), _case_names(labels)
    if image_names != label_names:
        missing_label = sorted(image_names - label_names)
        missing_image = sorted(label_names - image_names)
        parts = []
        if missing_label:
            parts.append(f"no label for {', '.join(missing_label[:5])}")
        if missing_image:
            parts.append(f"no image for {', '.join(missing_image[:5])}")
        raise InputError(f"{root}: images/ and labels/ do not match: {'; '.join(parts)}")
    if not image_names:
        raise InputError(f"{root}: no cases (images/*{SUFFIX})")

    cases = []
    for name in sorted(image_names):
        image_path, label_path = images / f"{name}{SUFFIX}", labels / f"{name}{SUFFIX}"
        _check_pair(name, image_path, label_path)
        cases.append(TestCase(name, image_path, label_path, None, _max_label(label_path)))
    return _with_dataset_json(root, cases)


def _dicom_cases(root: Path) -> list[TestCase]:
    """One case per sub-folder holding DICOM (checked: a SEG and its CT series, the SEG's segment types);
    folders without DICOM are no case."""
    from ichvol.models.data import DicomSegCase
    from ichvol.seg import read_segment_types

    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found = DicomSegCase.find(folder)
        except NotDicomError:
            continue
        try:
            types = read_segment_types(found.seg_path)
        except InputError as exc:
            raise InputError(f"case {found.case_id}: {exc}") from exc
        max_label = max((int(t) for t in types.values()), default=0)
        cases.append(TestCase(found.case_id, folder, found.seg_path, None, max_label, found.series_uid))
    return cases


def _with_dataset_json(root: Path, cases: list[TestCase]) -> TestSet:
    """The test set, with the types and label kind dataset.json declares."""
    declared_labels, declared_types = None, {}
    if (root / "dataset.json").is_file():
        declared_labels, declared_types = _read_dataset_json(root / "dataset.json", {c.name for c in cases})
    cases = [replace(case, declared_types=declared_types.get(case.name)) for case in cases]

    binary = declared_labels == "binary" or (declared_labels is None and max(case.max_label for case in cases) <= 1)
    if binary and declared_labels == "binary" and any(case.max_label > 1 for case in cases):
        bad = [case.name for case in cases if case.max_label > 1]
        raise InputError(f"{root}: dataset.json says binary labels but {', '.join(bad[:5])} hold values above 1")
    return TestSet(root, tuple(cases), binary)
