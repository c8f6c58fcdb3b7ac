"""The result writer shared by `ichvol encode`, `ichvol predict` and the PACS worker: label map -> measures,
DICOM SEG, DICOM SR and a JSON summary.

Label maps read from NIfTI must lie on the grid of the selected series. The rule (`check_same_grid`):
- same shape (slices, rows, columns);
- same in-plane geometry: row and column directions within 1e-3, pixel spacing within 0.1 %, first slice
  position within half the smaller pixel spacing;
- same slice extent: the last slice lies at the same offset along the normal (within 10 % of the mean slice
  spacing) and, in-plane, either where the series' last slice is (the sheared grid ichvol writes) or where
  the first slice projects along the normal (a grid without shear, as other tools write a tilted series).
NIfTI cannot hold uneven gaps: on an irregular series a label map is taken slice for slice.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .errors import InputError
from .geometry import VolumeGeometry
from .image import CTImage
from .labels import Hemorrhage
from .measure import HemorrhageMeasurements, measure_labels
from .nifti import read_volume
from .results import AlgorithmInfo, ResultFiles, ResultUIDs
from .seg import build_segmentation
from .sr import build_report

logger = logging.getLogger(__name__)

SEG_FILENAME = "seg.dcm"
SR_FILENAME = "sr.dcm"
MEASUREMENTS_FILENAME = "measurements.json"


def validate_labels(labels: np.ndarray, image: CTImage) -> np.ndarray:
    """The label map as uint8, or InputError when its shape or values do not fit."""
    if labels.shape != image.hu.shape:
        raise InputError(
            f"label map shape {tuple(labels.shape)} (slices, rows, columns) does not match the image shape "
            f"{tuple(image.hu.shape)}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise InputError("label map holds non-integer values; expected labels 0..5")
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if low < 0 or high > max(Hemorrhage):
        bad = sorted(set(np.unique(labels).astype(int).tolist()) - set(range(max(Hemorrhage) + 1)))
        raise InputError(
            f"label map holds value(s) {bad[:10]} outside 0..{int(max(Hemorrhage))} "
            f"(0 background, {', '.join(f'{int(h)} {h.name}' for h in Hemorrhage)})"
        )
    return labels.astype(np.uint8, copy=False)


def summary(measurements: HemorrhageMeasurements, uids: ResultUIDs, algorithm: AlgorithmInfo) -> dict:
    return {
        **measurements.to_dict(),
        "classification": measurements.classification(),
        "uids": uids.to_dict(),
        "algorithm": {"name": algorithm.name, "version": algorithm.version, "automatic": algorithm.automatic},
    }


def write_results(
    image: CTImage, labels: np.ndarray, out_dir: Path, uids: ResultUIDs, algorithm: AlgorithmInfo
) -> ResultFiles:
    """Measure `labels` on `image` and write out_dir/seg.dcm (only when hemorrhage is present), sr.dcm and
    measurements.json."""
    labels = validate_labels(labels, image)
    measurements = measure_labels(labels, image.geometry)
    segmentation = build_segmentation(image, labels, uids, algorithm)
    report = build_report(image, segmentation, measurements, uids, algorithm)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seg_path = None
    if segmentation is not None:
        seg_path = out_dir / SEG_FILENAME
        segmentation.save_as(seg_path, enforce_file_format=True)
    else:
        (out_dir / SEG_FILENAME).unlink(missing_ok=True)  # a stale SEG of an earlier run must not be sent
    sr_path = out_dir / SR_FILENAME
    report.save_as(sr_path, enforce_file_format=True)
    (out_dir / MEASUREMENTS_FILENAME).write_text(json.dumps(summary(measurements, uids, algorithm), indent=2))
    logger.info(
        "results written to %s (%s, %.2f ml)", out_dir, measurements.classification(), measurements.total_ml
    )
    return ResultFiles(seg_path=seg_path, sr_path=sr_path, measurements=measurements, uids=uids)


def check_same_grid(labels_geometry: VolumeGeometry, image_geometry: VolumeGeometry, what: str) -> None:
    """InputError naming the first disagreement when `what` (a label map) is not on the image's grid."""
    lab, img = labels_geometry, image_geometry
    if lab.shape != img.shape:
        raise InputError(
            f"{what}: shape {lab.shape} (slices, rows, columns) differs from the series' {img.shape}"
        )
    for name, a, b in (("row", lab.row_cosine, img.row_cosine), ("column", lab.col_cosine, img.col_cosine)):
        if not np.allclose(a, b, atol=1e-3):
            raise InputError(
                f"{what}: {name} direction {np.round(a, 4).tolist()} differs from the series' "
                f"{np.round(b, 4).tolist()} (a label map must be on the series' own grid)"
            )
    if not np.allclose(lab.pixel_spacing, img.pixel_spacing, rtol=1e-3):
        raise InputError(
            f"{what}: pixel spacing {lab.pixel_spacing} differs from the series' {img.pixel_spacing}"
        )
    tolerance = 0.5 * min(img.pixel_spacing)
    first_distance = float(np.linalg.norm(lab.positions[0] - img.positions[0]))
    if first_distance > tolerance:
        raise InputError(f"{what}: first slice is {first_distance:.2f} mm away from the series' first slice")
    if len(img.positions) < 2:
        return
    normal = img.normal
    last_offset = float((lab.positions[-1] - img.positions[0]) @ normal)
    expected_offset = float((img.positions[-1] - img.positions[0]) @ normal)
    if abs(last_offset - expected_offset) > 0.1 * abs(img.slice_spacing):
        raise InputError(
            f"{what}: the slices span {last_offset:.2f} mm along the normal, "
            f"the series {expected_offset:.2f} mm"
        )
    sheared = img.positions[-1]
    unsheared = img.positions[0] + expected_offset * normal
    if (
        min(np.linalg.norm(lab.positions[-1] - sheared), np.linalg.norm(lab.positions[-1] - unsheared))
        > tolerance
    ):
        raise InputError(
            f"{what}: the last slice does not lie on the series' last slice (gantry tilt differs)"
        )


def encode_study(
    study_dir: Path,
    labels_path: Path,
    out_dir: Path,
    algorithm: AlgorithmInfo | None = None,
    uids: ResultUIDs | None = None,
) -> ResultFiles:
    """SEG + SR for a label map (NIfTI) on the series that ichvol selects in a DICOM study folder."""
    from .dicom import load_ct_image  # the DICOM reader pulls in decoders: import it only when needed

    study_dir, labels_path = Path(study_dir), Path(labels_path)
    if not study_dir.is_dir():
        raise InputError(f"{study_dir}: not a folder (expected a folder of DICOM files)")
    if not labels_path.is_file():
        raise InputError(f"{labels_path}: no such file (expected a NIfTI label map)")
    image, _selection = load_ct_image(study_dir)
    labels, labels_geometry = read_volume(labels_path)
    check_same_grid(labels_geometry, image.geometry, str(labels_path))
    algorithm = algorithm or AlgorithmInfo(automatic=False)
    return write_results(image, labels, out_dir, uids or ResultUIDs.mint(), algorithm)
