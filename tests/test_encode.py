"""The writer pipeline (write_results), the label-map grid rule and `ichvol encode` end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from seg_sr_helpers import ct_image, ct_series, dciodvfy, ellipsoid_labels, write_series

from ichvol.encode import check_same_grid, encode_study, write_results
from ichvol.errors import InputError
from ichvol.geometry import LPS_TO_RAS, VolumeGeometry
from ichvol.labels import Hemorrhage
from ichvol.nifti import read_volume, write_volume
from ichvol.results import AlgorithmInfo, ResultUIDs


def _labels(shape):
    labels = ellipsoid_labels(shape, (4, 22, 18), (2, 9, 7), Hemorrhage.IPH)
    return ellipsoid_labels(shape, (7, 34, 14), (1.5, 5, 5), Hemorrhage.SAH, labels)


def test_write_results_writes_seg_sr_and_summary(tmp_path):
    image = ct_image(ct_series(n_slices=10, tilt_degrees=10.0))
    labels = _labels(image.hu.shape)
    uids = ResultUIDs.mint()
    result = write_results(image, labels, tmp_path / "out", uids, AlgorithmInfo(name="ichvol-test"))
    assert result.seg_path == tmp_path / "out" / "seg.dcm" and result.seg_path.is_file()
    assert result.sr_path == tmp_path / "out" / "sr.dcm" and result.sr_path.is_file()
    assert result.uids == uids
    summary = json.loads((tmp_path / "out" / "measurements.json").read_text())
    assert summary["classification"] == "IPH+SAH"
    assert summary["uids"] == uids.to_dict()
    voxel_ml = image.geometry.voxel_volumes_ml()
    for hemorrhage in (Hemorrhage.IPH, Hemorrhage.SAH):
        expected = float(((labels == hemorrhage).sum(axis=(1, 2)) * voxel_ml).sum())
        assert summary["per_type"][hemorrhage.name]["volume_ml"] == pytest.approx(expected, abs=1e-3)
    assert result.measurements.total_ml == pytest.approx(summary["total_ml"], abs=1e-3)

    # the same folder, now without hemorrhage: the SR says so and the stale SEG is gone
    empty = write_results(image, np.zeros_like(labels), tmp_path / "out", ResultUIDs.mint(), AlgorithmInfo())
    assert empty.seg_path is None and not (tmp_path / "out" / "seg.dcm").exists()
    assert json.loads((tmp_path / "out" / "measurements.json").read_text())["classification"] == "none"
    assert dciodvfy(empty.sr_path)[0] == []


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((3, 48, 40), np.uint8), r"label map shape \(3, 48, 40\).*image shape \(4, 48, 40\)"),
        (np.full((4, 48, 40), 6, np.uint8), r"value\(s\) \[6\] outside 0..5"),
        (np.full((4, 48, 40), -1, np.int16), r"value\(s\) \[-1\] outside 0..5"),
        (np.full((4, 48, 40), 0.5, np.float32), "non-integer"),
    ],
)
def test_write_results_rejects_bad_label_maps(labels, message, tmp_path):
    image = ct_image(ct_series(n_slices=4))
    with pytest.raises(InputError, match=message):
        write_results(image, labels, tmp_path, ResultUIDs.mint(), AlgorithmInfo())
    assert not (tmp_path / "sr.dcm").exists()


def _nifti_geometry(geometry: VolumeGeometry, affine_lps: np.ndarray, tmp_path) -> VolumeGeometry:
    """The geometry a label map with this LPS affine has once written and read back as NIfTI."""
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(geometry.shape[::-1], np.uint8), LPS_TO_RAS @ affine_lps), str(path))
    return read_volume(path)[1]


def test_grid_rule_accepts_sheared_and_unsheared_grids_and_rejects_others(tmp_path):
    geometry = ct_image(
        ct_series(n_slices=9, tilt_degrees=20.0, gaps_mm=[5, 5, 5, 2.5, 7.5, 5, 5, 5])
    ).geometry
    sheared = geometry.affine()
    check_same_grid(_nifti_geometry(geometry, sheared, tmp_path), geometry, "sheared")
    unsheared = sheared.copy()
    unsheared[:3, 2] = geometry.normal * geometry.slice_spacing  # how a tool unaware of tilt writes it
    check_same_grid(_nifti_geometry(geometry, unsheared, tmp_path), geometry, "unsheared")

    shifted = sheared.copy()
    shifted[:3, 3] += [3.0, 0.0, 0.0]
    with pytest.raises(InputError, match="first slice is 3.00 mm away"):
        check_same_grid(_nifti_geometry(geometry, shifted, tmp_path), geometry, "shifted")
    thinner = sheared.copy()
    thinner[:3, 2] *= 0.5
    with pytest.raises(InputError, match="along the normal"):
        check_same_grid(_nifti_geometry(geometry, thinner, tmp_path), geometry, "thinner")
    other_tilt = unsheared.copy()
    other_tilt[:3, 2] += [0.0, -1.0, 0.0]
    with pytest.raises(InputError, match="gantry tilt differs"):
        check_same_grid(_nifti_geometry(geometry, other_tilt, tmp_path), geometry, "other tilt")
    spacing = sheared.copy()
    spacing[:3, 0] *= 1.1
    with pytest.raises(InputError, match="pixel spacing"):
        check_same_grid(_nifti_geometry(geometry, spacing, tmp_path), geometry, "spacing")


def _ichvol(*args):
    return subprocess.run(
        [sys.executable, "-m", "ichvol", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_encode_study_on_tilted_uneven_series(tmp_path):
    datasets = ct_series(n_slices=10, tilt_degrees=18.5, gaps_mm=[5, 5, 5, 2.5, 7.5, 5, 5, 5, 5])
    study = write_series(datasets, tmp_path / "study")
    image = ct_image(datasets)
    labels = _labels(image.hu.shape)
    write_volume(tmp_path / "labels.nii.gz", labels, image.geometry)

    algorithm = AlgorithmInfo(name="my-model", version="3.1")
    result = encode_study(study, tmp_path / "labels.nii.gz", tmp_path / "out", algorithm)
    assert result.seg_path == tmp_path / "out" / "seg.dcm"
    for name in ("seg.dcm", "sr.dcm"):
        assert dciodvfy(tmp_path / "out" / name)[0] == []
    summary = json.loads((tmp_path / "out" / "measurements.json").read_text())
    assert summary["algorithm"] == {"name": "my-model", "version": "3.1", "automatic": True}
    expected = float(((labels == Hemorrhage.IPH).sum(axis=(1, 2)) * image.geometry.voxel_volumes_ml()).sum())
    assert summary["per_type"]["IPH"]["volume_ml"] == pytest.approx(expected, abs=1e-3)


def test_encode_errors_are_clean(tmp_path):
    datasets = ct_series(n_slices=9)
    study = write_series(datasets, tmp_path / "study")
    image = ct_image(datasets)
    bad = np.zeros(image.hu.shape, np.uint8)
    bad[2, 3, 4] = 9
    write_volume(tmp_path / "bad.nii.gz", bad, image.geometry)
    write_volume(tmp_path / "short.nii.gz", bad[:5], image.geometry.with_slices(np.arange(5)))
    for labels, message in (("short.nii.gz", "shape (5, 48, 40)"), ("missing.nii.gz", "no such file")):
        with pytest.raises(InputError, match=re.escape(message)):
            encode_study(study, tmp_path / labels, tmp_path / "out")
    with pytest.raises(InputError, match="not a folder"):
        encode_study(tmp_path / "nowhere", tmp_path / "bad.nii.gz", tmp_path / "out")

    run = _ichvol("encode", study, tmp_path / "bad.nii.gz", "--out", tmp_path / "out")
    assert run.returncode != 0
    assert "outside 0..5" in " ".join(run.stderr.split()), run.stderr  # rich wraps long lines
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out" / "sr.dcm").exists()
