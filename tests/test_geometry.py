import numpy as np
import pytest

from ichvol.errors import GeometryError, InputError
from ichvol.geometry import VolumeGeometry
from ichvol.nifti import read_volume, write_volume


def stack(n=5, spacing=5.0, tilt_deg=0.0, gaps=None, ps=(0.5, 0.5), rows=8, cols=10):
    t = np.radians(tilt_deg)
    row_cos = np.array([1.0, 0.0, 0.0])
    col_cos = np.array([0.0, np.cos(t), -np.sin(t)])
    steps = np.full(n - 1, spacing) if gaps is None else np.asarray(gaps, float)
    z = np.concatenate([[0.0], np.cumsum(steps)])
    # Scanners step the table along patient z; the tilted plane normal is not along z.
    positions = np.stack([np.full(n, -10.0), np.full(n, -20.0), z], axis=1)
    return VolumeGeometry(positions, row_cos, col_cos, ps, rows, cols)


def test_untilted_regular_stack():
    g = stack()
    assert g.tilt_degrees == pytest.approx(0.0)
    assert g.slice_spacing == pytest.approx(5.0)
    assert np.allclose(g.voxel_volumes_ml(), 0.5 * 0.5 * 5.0 / 1000)
    assert g.is_regular()


def test_tilt_shortens_spacing_along_normal_but_not_the_voxel_area():
    g = stack(tilt_deg=20.0)
    assert g.tilt_degrees == pytest.approx(20.0, abs=1e-6)
    assert g.slice_spacing == pytest.approx(5.0 * np.cos(np.radians(20.0)))
    assert np.allclose(g.voxel_volumes_ml(), 0.25 * 5.0 * np.cos(np.radians(20.0)) / 1000)


def test_uneven_gaps_give_per_slice_thickness():
    g = stack(n=4, gaps=[2.0, 4.0, 6.0])
    assert np.allclose(g.slice_thicknesses(), [2.0, 3.0, 5.0, 6.0])
    assert not g.is_regular()


def test_one_slice_has_no_volume():
    with pytest.raises(GeometryError):
        stack(n=1).voxel_volumes_ml()


def test_affine_maps_indices_to_slice_positions():
    g = stack(tilt_deg=15.0)
    a = g.affine()
    for k, p in enumerate(g.positions):
        assert np.allclose((a @ [0, 0, k, 1])[:3], p)
    assert np.allclose((a @ [2, 3, 0, 1])[:3], g.positions[0] + 2 * 0.5 * g.row_cosine + 3 * 0.5 * g.col_cosine)


@pytest.mark.parametrize("tilt", [0.0, 18.5])
def test_nifti_round_trip_keeps_array_and_geometry(tmp_path, tilt):
    g = stack(tilt_deg=tilt, ps=(0.45, 0.5))
    data = np.arange(np.prod(g.shape), dtype=np.int16).reshape(g.shape)
    write_volume(tmp_path / "x.nii.gz", data, g)
    back, g2 = read_volume(tmp_path / "x.nii.gz")
    assert np.array_equal(back, data)
    assert np.allclose(g2.positions, g.positions, atol=1e-4)
    assert g2.pixel_spacing == pytest.approx(g.pixel_spacing)
    assert g2.tilt_degrees == pytest.approx(tilt, abs=1e-3)
    assert np.allclose(g2.voxel_volumes_ml(), g.voxel_volumes_ml())


def test_nifti_write_is_deterministic(tmp_path):
    g = stack()
    data = np.ones(g.shape, np.uint8)
    write_volume(tmp_path / "a.nii.gz", data, g)
    write_volume(tmp_path / "b.nii.gz", data, g)
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()


def test_reading_garbage_is_an_input_error(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"not nifti")
    with pytest.raises(InputError, match="not a readable NIfTI"):
        read_volume(tmp_path / "bad.nii.gz")
    with pytest.raises(InputError, match="no such file"):
        read_volume(tmp_path / "missing.nii.gz")
