"""benchmarks/real_masks_in_real_ct.py: a mask carried into another CT grid keeps its volume and lands in
the brain, tilt included (synthetic mask and head here; the real data is used by the benchmark itself)."""

import importlib.util
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ichvol.geometry import VolumeGeometry
from ichvol.image import CTImage

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_masks_in_real_ct.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("real_masks_in_real_ct", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _head(tilt_degrees: float, gaps=None) -> CTImage:
    shape = (16, 96, 96)
    step = np.array([0.0, 5.0 * np.tan(np.radians(tilt_degrees)), 5.0])
    offsets = np.cumsum([0.0, *(gaps or [1.0] * (shape[0] - 1))])
    positions = offsets[:, None] * step[None, :] + np.array([-96.0, -96.0, 0.0])
    geometry = VolumeGeometry(positions, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (2.0, 2.0), 96, 96)
    z, y, x = np.indices(shape, dtype=float)
    r = np.sqrt(((y - 48) / 44) ** 2 + ((x - 48) / 38) ** 2)
    hu = np.full(shape, -1000.0)
    hu[r < 1.0] = 1200.0
    hu[r < 0.9] = 32.0
    hu += np.random.default_rng(0).normal(0, 3, shape) * (r < 0.9)
    return CTImage(hu.astype(np.int16), geometry)


def _sphere_mask(path: Path, radius_mm: float = 12.0) -> float:
    """A sphere in an oblique 0.5 x 0.5 x 2 mm NIfTI grid; returns its volume in ml."""
    spacing = np.array([0.5, 0.5, 2.0])
    n = np.array([80, 80, 20])
    idx = np.indices(n, dtype=float).reshape(3, -1).T
    centre = (n - 1) / 2
    inside = (np.linalg.norm((idx - centre) * spacing, axis=1) <= radius_mm).reshape(n)
    angle = np.radians(12.0)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = [70.0, -40.0, 30.0]  # far from the target head: the tool moves it into the brain
    nib.save(nib.Nifti1Image(inside.astype(np.uint8), affine), str(path))
    return 4 / 3 * np.pi * radius_mm**3 / 1000


@pytest.mark.parametrize("tilt", [0.0, 20.0])
def test_insertion_keeps_volume_and_lands_in_brain(tool, tmp_path, tilt):
    expected_ml = _sphere_mask(tmp_path / "m.nii.gz")
    image = _head(tilt)
    brain, core = tool.brain_masks(image.hu, 2.0)
    run = tool.Run("head", image, brain, core)
    fraction, _ = tool.lesion_fraction(tmp_path / "m.nii.gz", image)
    # The partial-volume fractions add up to the sphere: the resampling follows the physical grid under tilt.
    assert fraction.sum() * image.geometry.voxel_volumes_ml()[0] == pytest.approx(expected_ml, rel=0.03)
    rng = np.random.default_rng(1)
    box = tool.place(fraction, run, rng)
    assert box is not None
    hu, labels = tool.insert(run, fraction, box, 70.0, rng)
    volume = float(labels.sum(axis=(1, 2)) @ image.geometry.voxel_volumes_ml())
    assert volume == pytest.approx(expected_ml, rel=0.12)  # 2 mm pixels, 5 mm slices: coarse voxels
    assert brain[labels > 0].mean() >= 0.9
    assert 55 <= np.median(hu[labels > 0]) <= 85  # blood, blended at the edges only
    outside = np.ones(hu.shape, bool)
    lo, hi = box
    outside[tuple(slice(max(a, 0), b) for a, b in zip(lo, hi, strict=True))] = False
    assert np.array_equal(hu[outside], image.hu[outside])  # nothing changed away from the lesion


def test_even_runs_split_a_change_of_spacing(tool):
    image = _head(0.0, gaps=[0.8] * 9 + [0.2] + [1.4] * 5)
    runs = tool.even_runs(image)
    assert [list(r) for r in runs] == [list(range(0, 10))]  # the 6-slice run is too short, the gap a seam
