"""A series that mixes stacks (two gantry tilts, a localizer, a second kernel at the same positions) is split
into parts: the best part is processed, the others are listed with the reason (B)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_factory import SeriesSpec, tilted_orientation, write_series

from ichvol.dicom import load_ct_image, read_study, select_series
from ichvol.dicom.parts import split_series
from ichvol.errors import GeometryError


def test_two_gantry_tilts_in_one_series_process_the_larger_stack(tmp_path):
    """Posterior fossa at 20 degrees, cerebrum at 0 in one series: the cerebrum (more slices) is processed,
    with a warning; the posterior fossa is listed as a qualifying part ranked below."""
    cerebrum = SeriesSpec(slices=12, series_number=3)
    fossa = SeriesSpec(slices=9, series_number=3, series_uid=cerebrum.series_uid,
                       orientation=tilted_orientation(20.0), offsets_mm=list(-60.0 + 5.0 * np.arange(9)))
    write_series(tmp_path / "a", cerebrum)
    write_series(tmp_path / "b", fossa)
    uid = cerebrum.series_uid

    image, selection = load_ct_image(tmp_path)
    assert selection.chosen == f"{uid}#1" and selection.candidates == (f"{uid}#1", f"{uid}#2")
    assert image.hu.shape[0] == 12 and image.series_instance_uid == uid
    np.testing.assert_array_equal(image.hu, cerebrum.hu())
    assert any("one of 2 stacks mixed in one series" in w for w in selection.warnings)
    assert "part 2 of 2 (9 images, slice normal 20.0 degrees from z" in selection.rejected[f"{uid}#2"]
    assert "ranked below" in selection.rejected[f"{uid}#2"]

    image, selection = load_ct_image(tmp_path, series_uid=uid)  # asked by UID: its best part
    assert selection.chosen == f"{uid}#1"
    image, selection = load_ct_image(tmp_path, series_uid=f"{uid}#2")  # or a part by its key
    assert image.hu.shape[0] == 9 and selection.chosen == f"{uid}#2"


def test_a_localizer_inside_the_axial_series_is_left_out(tmp_path):
    axial = SeriesSpec(slices=10)
    write_series(tmp_path / "axial", axial)
    scout = SeriesSpec(slices=1, series_uid=axial.series_uid, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
                       image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    write_series(tmp_path / "scout", scout)
    image, selection = load_ct_image(tmp_path)
    assert image.hu.shape[0] == 10
    assert "localizer (scout)" in selection.rejected[f"{axial.series_uid}#2"]


def test_two_kernels_at_the_same_positions_split_and_the_soft_one_is_read(tmp_path):
    soft = SeriesSpec(slices=10, kernel="STANDARD")
    bone = SeriesSpec(slices=10, kernel="BONE", series_uid=soft.series_uid)
    write_series(tmp_path / "soft", soft)
    write_series(tmp_path / "bone", bone, hu=bone.hu() + 100)
    image, selection = load_ct_image(tmp_path)
    np.testing.assert_array_equal(image.hu, soft.hu())
    assert selection.chosen.startswith(f"{soft.series_uid}#")
    (other,) = [reason for key, reason in selection.rejected.items() if key.startswith(soft.series_uid)]
    assert "kernel BONE" in other and "ranked below" in other


def test_one_stack_is_never_split_by_kernel_or_image_type_alone(tmp_path):
    """A stack that changes kernel and ImageType along its length, at distinct positions, stays one volume."""
    spec = SeriesSpec(slices=10)
    write_series(tmp_path, spec)
    for path in sorted(tmp_path.iterdir())[:4]:
        ds = pydicom.dcmread(path)
        ds.ConvolutionKernel = "SOFT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "HELICAL"]
        ds.save_as(path)
    scan = read_study(tmp_path)
    assert split_series(scan.series[spec.series_uid]) == [scan.series[spec.series_uid]]
    image, selection = load_ct_image(tmp_path)
    assert selection.chosen == spec.series_uid and image.hu.shape[0] == 10


def test_same_kernel_at_the_same_positions_with_other_pixels_is_still_an_error(tmp_path):
    spec = SeriesSpec(slices=10)
    write_series(tmp_path / "a", spec)
    write_series(tmp_path / "b", spec, hu=spec.hu() + 50)
    assert select_series(read_study(tmp_path)).chosen == spec.series_uid
    with pytest.raises(GeometryError, match="two acquisitions mixed in one series"):
        load_ct_image(tmp_path)
