"""Training data: cases in one of two layouts (see `find_cases`), preprocessed once into cached arrays per stage
(coarse head volumes for stage 1, full-resolution ROIs for stage 2), and the MONAI augmentation pipeline of
the paper's recipe."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from monai import transforms as mt

from ichvol.errors import InputError, NotDicomError
from ichvol.image import CTImage
from ichvol.nifti import read_volume

from .cascade import roi_boxes, roi_input_shape
from .config import ModelConfig, StageConfig
from .preprocess import (
    coarse_shape,
    downsample_labels,
    foreground_boxes,
    head_box,
    normalize,
    resize,
    slice_spacing_or_default,
)

log = logging.getLogger(__name__)

# (HU float32 (slices, rows, columns), labels uint8 (same shape), pixel spacing (rows, columns) mm, slice spacing mm)
CaseArrays = tuple[np.ndarray, np.ndarray, tuple[float, float], float]


class Case(ABC):
    """One training case: its id and how to load its CT and label map (0 background, 1..5 Hemorrhage)."""

    case_id: str
    layout: ClassVar[str]  # the data layout, as training.json and the model card describe it

    @abstractmethod
    def load_image(self) -> tuple[CTImage, np.ndarray]:
        """The CT as the predictor takes it and its label map (uint8) on the CT's own grid."""

    def load(self) -> CaseArrays:
        """(HU float32, labels uint8, pixel spacing, slice spacing) on the CT's own grid."""
        image, labels = self.load_image()
        geometry = image.geometry
        return (np.asarray(image.hu, dtype=np.float32), labels, geometry.pixel_spacing,
                slice_spacing_or_default(geometry.slice_spacing))


@dataclass(frozen=True)
class NiftiCase(Case):
    """`images/<case>.nii.gz` (HU) with `labels/<case>.nii.gz` on the same grid."""

    case_id: str
    image_path: Path
    label_path: Path
    layout: ClassVar[str] = "NIfTI images/ + labels/ folder"

    def load_image(self) -> tuple[CTImage, np.ndarray]:
        hu, geometry = read_volume(self.image_path)
        labels, _ = read_volume(self.label_path)
        if labels.shape != hu.shape:
            raise InputError(f"case {self.case_id}: labels {labels.shape} and image {hu.shape} differ in shape")
        return CTImage(hu.astype(np.float32), geometry), np.rint(labels).astype(np.uint8)


@dataclass(frozen=True)
class DicomSegCase(Case):
    """A folder holding a DICOM study: the CT series and one SEG with the labels (ichvol.seg.read_segmentation
    says how segments become types). `series_uid` is the CT series the SEG is read on."""

    case_id: str
    folder: Path
    seg_path: Path
    series_uid: str
    layout: ClassVar[str] = "DICOM study + SEG per case folder"

    @classmethod
    def find(cls, folder: Path) -> DicomSegCase:
        """The case of a folder: InputError naming the folder when it has a CT but no SEG, several SEGs, or a
        SEG whose CT series is not there; NotDicomError when it holds no DICOM at all."""
        from ichvol.seg import find_segmentation

        try:
            seg_path, series_uid = find_segmentation(folder)
        except NotDicomError:
            raise
        except InputError as exc:
            raise _naming_case(exc, folder.name) from exc
        return cls(folder.name, folder, seg_path, series_uid)

    def load_image(self) -> tuple[CTImage, np.ndarray]:
        from ichvol.dicom import load_ct_image
        from ichvol.seg import read_segmentation

        try:
            image, _ = load_ct_image(self.folder, series_uid=self.series_uid)
            return image, read_segmentation(self.seg_path, image)
        except InputError as exc:
            raise _naming_case(exc, self.case_id) from exc


def _naming_case(exc: InputError, case_id: str) -> InputError:
    """The same error (same type) with the case named first."""
    try:
        return type(exc)(f"case {case_id}: {exc}")
    except TypeError:  # a subclass with other constructor arguments
        return InputError(f"case {case_id}: {exc}")


def find_cases(data_dir: Path) -> list[Case]:
    """The training cases of `data_dir`, in one of two layouts:

    - NIfTI: `images/<case>.nii.gz` (HU) and `labels/<case>.nii.gz` (0 background, 1 IPH, 2 IVH, 3 SAH, 4 SDH,
      5 EDH) on the same grid; chosen when `images/` or `labels/` exists;
    - DICOM + SEG: one folder per case, `<case>/`, holding a DICOM study (any file names, sub-folders allowed)
      with the CT series and one DICOM SEG of it; the CT series the SEG references is used. Folders without
      DICOM are skipped (with a warning).

    InputError naming the case when one is incomplete (image without labels, CT without SEG, SEG without its
    CT series), and when no case is found.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: no such folder (expected images/ and labels/ folders, or one folder per "
                         "case holding a DICOM study with its SEG)")
    if (data_dir / "images").is_dir() or (data_dir / "labels").is_dir():
        return _nifti_cases(data_dir)
    cases: list[Case] = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            cases.append(DicomSegCase.find(folder))
        except NotDicomError:
            log.warning("%s: no DICOM files; not a case", folder)
    if not cases:
        raise InputError(f"{data_dir}: no training cases; expected images/ and labels/ folders with "
                         "<case>.nii.gz files, or one folder per case holding a DICOM study with its SEG")
    return cases


def _nifti_cases(data_dir: Path) -> list[Case]:
    images, labels = data_dir / "images", data_dir / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise InputError(f"{data_dir}: expected images/ and labels/ folders with <case>.nii.gz files")
    cases: list[Case] = []
    for image_path in sorted(images.glob("*.nii.gz")):
        case_id = image_path.name[: -len(".nii.gz")]
        label_path = labels / image_path.name
        if not label_path.is_file():
            raise InputError(f"{data_dir}: case {case_id} has an image but no labels/{image_path.name}")
        cases.append(NiftiCase(case_id, image_path, label_path))
    if not cases:
        raise InputError(f"{data_dir}/images: no .nii.gz cases found")
    return cases


def split_cases(cases: list[Case], fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Seeded train/validation split; at least one case each when there are two or more."""
    order = np.random.default_rng(seed).permutation(len(cases))
    n_val = min(max(1, int(round(fraction * len(cases)))), len(cases) - 1) if len(cases) > 1 else 0
    val = sorted((cases[i] for i in order[:n_val]), key=lambda c: c.case_id)
    train = sorted((cases[i] for i in order[n_val:]), key=lambda c: c.case_id)
    return train, val


def stage1_items(case: Case, config: ModelConfig) -> list[dict]:
    """The coarse head volume exactly as stage 1 sees it at inference, with area-downsampled labels."""
    hu, labels, pixel_spacing, _ = case.load()
    head = head_box(hu, config.preprocessing, pixel_spacing)
    shape = coarse_shape(hu[head].shape, pixel_spacing, config.stage1.in_plane_spacing_mm)
    image = resize(normalize(hu[head], config.preprocessing), shape)
    label = downsample_labels(torch.from_numpy(labels[head]), shape, config.num_classes)
    return [{"image": image.half(), "label": label[None], "case": case.case_id}]


def stage2_items(case: Case, config: ModelConfig, rng: np.random.Generator) -> list[dict]:
    """ROIs cut the way the cascade cuts them, around the true hemorrhage (margin varied), plus
    hemorrhage-free boxes that stand for stage 1's false alarms."""
    hu, labels, pixel_spacing, slice_spacing = case.load()
    found = foreground_boxes(labels > 0, min_voxels=1)
    boxes = roi_boxes(found, hu.shape, pixel_spacing, slice_spacing, config.cascade,
                      margin_scale=float(rng.uniform(0.6, 1.6))) if found else []
    head = head_box(hu, config.preprocessing, pixel_spacing)
    for _ in range(config.training.stage2_negative_rois_per_case):
        boxes.append(_random_box(head, hu.shape, pixel_spacing, rng))
    items = []
    for box in boxes:
        image = resize(normalize(hu[box], config.preprocessing), roi_input_shape(box, config.stage2, pixel_spacing))
        label = resize(torch.from_numpy(labels[box])[None], image.shape[1:], mode="nearest-exact").to(torch.uint8)
        items.append({"image": image.half(), "label": label, "case": case.case_id})
    return items


def _random_box(head, shape, pixel_spacing, rng: np.random.Generator):
    side = int(rng.uniform(40.0, 120.0) / pixel_spacing[0])
    depth = int(rng.integers(4, max(5, shape[0] // 2)))
    z0 = int(rng.integers(0, max(1, shape[0] - depth)))

    def start(s: slice, n: int) -> int:
        lo, hi = s.start, max(s.start + 1, s.stop - side)
        return int(min(rng.integers(lo, hi), max(0, n - side)))

    y0, x0 = start(head[1], shape[1]), start(head[2], shape[2])
    return (slice(z0, min(shape[0], z0 + depth)), slice(y0, min(shape[1], y0 + side)),
            slice(x0, min(shape[2], x0 + side)))


def cache_items(cases: list[Case], config: ModelConfig, stage: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    items = []
    for case in cases:
        items.extend(stage1_items(case, config) if stage == 1 else stage2_items(case, config, rng))
    return items


def train_transforms(stage: StageConfig, config: ModelConfig) -> mt.Compose:
    """The paper's augmentation on cached (channel, z, y, x) arrays; range_x rotates in the axial plane."""
    keys = ["image", "label"]
    angle = math.radians(config.training.rotation_degrees)
    fraction = config.training.positive_fraction
    return mt.Compose([
        mt.CastToTyped(keys=["image"], dtype=torch.float32),
        mt.SpatialPadd(keys=keys, spatial_size=stage.crop_size),
        mt.RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=stage.crop_size,
                                  pos=fraction, neg=1.0 - fraction, num_samples=1, allow_smaller=False),
        mt.RandRotated(keys=keys, range_x=angle, prob=0.5, mode=("bilinear", "nearest"), padding_mode="zeros"),
        mt.RandFlipd(keys=keys, spatial_axis=2, prob=0.5),
        mt.RandFlipd(keys=keys, spatial_axis=1, prob=0.5),
        mt.RandGaussianNoised(keys=["image"], prob=0.5, std=0.03),
        mt.RandGaussianSmoothd(keys=["image"], prob=0.5, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0),
                               sigma_z=(0.0, 0.3)),
        mt.RandAdjustContrastd(keys=["image"], prob=0.5, gamma=(0.7, 1.5)),
        mt.CastToTyped(keys=["label"], dtype=torch.long),
    ])
