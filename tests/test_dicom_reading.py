"""Reading a study: file discovery, volume assembly, geometry, rescale, duplicates, gaps, enhanced CT (B)."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pydicom
import pytest
from dicom_factory import (
    SeriesSpec,
    tilted_orientation,
    write_enhanced,
    write_series,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

from ichvol.dicom import load_ct_image, load_image, read_study, select_series
from ichvol.errors import GeometryError, InputError, NoSuitableSeriesError, NotDicomError, PixelDataError
from ichvol.nifti import write_volume


def test_slices_sorted_by_position_not_instance_number_or_file_name(tmp_path):
    spec = SeriesSpec()
    write_series(tmp_path, spec, seed=3)
    image, selection = load_ct_image(tmp_path)
    assert selection.chosen == spec.series_uid
    assert image.hu.dtype == np.int16
    np.testing.assert_array_equal(image.hu, spec.hu())
    np.testing.assert_allclose(image.geometry.positions, spec.positions())
    # SliceThickness says 99 mm: the spacing comes from the positions.
    np.testing.assert_allclose(image.geometry.slice_gaps(), 5.0)
    assert image.geometry.pixel_spacing == (0.5, 0.6)
    assert [int(ds.InstanceNumber) for ds in image.datasets] == list(range(10, 0, -1))
    assert all("PixelData" not in ds for ds in image.datasets)
    assert image.frame_numbers == ()


def test_gantry_tilt_is_kept_in_the_geometry(tmp_path):
    spec = SeriesSpec(orientation=tilted_orientation(20.0))
    write_series(tmp_path, spec)
    image, _ = load_ct_image(tmp_path)
    assert image.geometry.tilt_degrees == pytest.approx(20.0, abs=1e-3)
    np.testing.assert_allclose(image.geometry.slice_gaps(), 5.0 * np.cos(np.radians(20.0)), atol=1e-6)
    np.testing.assert_allclose(image.geometry.positions, spec.positions())
    np.testing.assert_array_equal(image.hu, spec.hu())


def test_uneven_gaps_are_kept_and_missing_slice_is_reported(tmp_path):
    uneven = SeriesSpec(offsets_mm=[0, 5, 10, 12, 14, 19, 24, 29, 34, 39])
    write_series(tmp_path / "uneven", uneven)
    image, selection = load_ct_image(tmp_path / "uneven")
    np.testing.assert_allclose(image.geometry.slice_gaps(), np.diff(uneven.offsets()))
    assert selection.warnings == ()

    missing = SeriesSpec(offsets_mm=[0, 5, 10, 15, 25, 30, 35, 40, 45])
    write_series(tmp_path / "missing", missing)
    image, selection = load_ct_image(tmp_path / "missing")
    assert image.hu.shape[0] == 9
    assert len(selection.warnings) == 1
    assert "10.00 mm between slices 3 and 4" in selection.warnings[0]


def test_identical_duplicate_dropped_conflicting_duplicate_named(tmp_path):
    spec = SeriesSpec()
    paths = write_series(tmp_path / "dup", spec)
    copy = pydicom.dcmread(paths[4])
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    copy.save_as(tmp_path / "dup" / "resent_copy")
    shutil.copy(paths[2], tmp_path / "dup" / "same_file_twice")
    image, selection = load_ct_image(tmp_path / "dup")
    assert image.hu.shape == (10, 64, 64)
    np.testing.assert_array_equal(image.hu, spec.hu())
    assert any("duplicates" in w and "dropped" in w for w in selection.warnings)
    assert "same SOPInstanceUID" in read_study(tmp_path / "dup").skipped[tmp_path / "dup" / "same_file_twice"]

    paths = write_series(tmp_path / "conflict", spec)
    other = pydicom.dcmread(paths[4])
    other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    other.PixelData = (np.frombuffer(other.PixelData, np.uint16) + 7).astype(np.uint16).tobytes()
    other.save_as(tmp_path / "conflict" / "other_acquisition")
    with pytest.raises(GeometryError, match="other_acquisition.*same position"):
        load_ct_image(tmp_path / "conflict")


@pytest.mark.parametrize(
    ("signed", "slope", "intercept", "dtype"),
    [(True, 1.0, 0.0, np.int16), (False, 1.0, -1024.0, np.int16), (True, 0.5, -1000.0, np.float32),
     (False, 2.0, -2048.0, np.int16)],
)
def test_signed_unsigned_pixels_and_rescale(tmp_path, signed, slope, intercept, dtype):
    spec = SeriesSpec(signed=signed, slope=slope, intercept=intercept)
    expected = spec.hu() if slope != 2.0 else 2 * np.round(spec.hu() / 2)
    write_series(tmp_path, spec, hu=expected)
    image, _ = load_ct_image(tmp_path)
    assert image.hu.dtype == dtype
    np.testing.assert_array_equal(image.hu, expected)


@pytest.mark.parametrize(
    ("signed", "padding", "range_limit", "as_unsigned_pattern"),
    [(False, 63536, None, False), (True, -2000, None, False), (True, -2000, None, True),
     (False, 0, 100, False)],
)
def test_pixel_padding_reads_as_air(tmp_path, signed, padding, range_limit, as_unsigned_pattern):
    """Padding outside the field of view becomes -1024 HU, whatever rescale would make of it (an unsigned
    63536 with intercept -1024 would read as 62512 HU); other pixels keep their values."""
    spec = SeriesSpec(signed=signed)
    expected = spec.hu()
    write_series(tmp_path, spec, hu=expected)
    outside = np.zeros(expected.shape[1:], bool)
    outside[:, :5] = True
    outside[-3:, :] = True
    for path in tmp_path.iterdir():
        ds = pydicom.dcmread(path)
        values = ds.pixel_array.copy()
        values[outside] = padding if range_limit is None else np.arange(outside.sum()) % (range_limit + 1)
        ds.PixelData = values.tobytes()
        ds.PixelPaddingValue = padding & 0xFFFF if as_unsigned_pattern else padding
        ds["PixelPaddingValue"].VR = "US" if (as_unsigned_pattern or not signed) else "SS"
        if range_limit is not None:
            ds.PixelPaddingRangeLimit = range_limit
            ds["PixelPaddingRangeLimit"].VR = "US"
        ds.save_as(path)
    image, _ = load_ct_image(tmp_path)
    expected[:, outside] = -1024
    np.testing.assert_array_equal(image.hu, expected)


def test_mixed_orientations_and_one_slice_are_geometry_errors(tmp_path):
    spec = SeriesSpec(slices=10)
    write_series(tmp_path / "mixed", spec)
    for path in sorted((tmp_path / "mixed").iterdir())[:3]:
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.save_as(path)
    with pytest.raises(GeometryError, match="mixed orientations"):
        load_ct_image(tmp_path / "mixed")
    # Split into its two stacks, neither has enough slices: each part says why.
    with pytest.raises(NoSuitableSeriesError, match="7 slice positions") as caught:
        select_series(read_study(tmp_path / "mixed"))
    assert set(caught.value.reasons) == {f"{spec.series_uid}#1", f"{spec.series_uid}#2"}
    assert "one slice position only" in caught.value.reasons[f"{spec.series_uid}#2"]

    write_series(tmp_path / "one", SeriesSpec(slices=1))
    with pytest.raises(GeometryError, match="one slice"):
        load_ct_image(tmp_path / "one")


def test_not_dicom_files_and_dicomdir_are_skipped(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "random.bin").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(NotDicomError, match="no DICOM"):
        read_study(tmp_path)
    with pytest.raises(NotDicomError):
        load_ct_image(tmp_path / "sub")
    with pytest.raises(InputError, match="no such file or folder"):
        load_ct_image(tmp_path / "absent")

    spec = SeriesSpec()
    write_series(tmp_path / "sub" / "deeper", spec)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    index = Dataset()
    index.file_meta = meta
    index.FileSetID = "X"
    index.save_as(tmp_path / "INDEXFILE", enforce_file_format=True)
    scan = read_study(tmp_path)
    assert list(scan.series) == [spec.series_uid]
    assert scan.skipped[tmp_path / "notes.txt"] == "not a DICOM file"
    assert "DICOMDIR" in scan.skipped[tmp_path / "INDEXFILE"]
    image, _ = load_ct_image(tmp_path)
    assert image.hu.shape == (10, 64, 64)


def test_missing_pixel_data_is_a_pixel_data_error(tmp_path):
    write_series(tmp_path, SeriesSpec(pixel_data=False))
    with pytest.raises(PixelDataError, match="no pixel data"):
        load_ct_image(tmp_path)


def test_enhanced_multiframe_ct(tmp_path):
    spec = SeriesSpec(slices=9, orientation=tilted_orientation(12.0), kernel="H31s")
    order = [4, 0, 8, 2, 6, 1, 3, 7, 5]
    write_enhanced(tmp_path / "enhanced.dcm", spec, order)
    image, selection = load_ct_image(tmp_path, min_slices=8)
    assert selection.chosen == spec.series_uid
    np.testing.assert_array_equal(image.hu, spec.hu())
    assert image.geometry.tilt_degrees == pytest.approx(12.0, abs=1e-3)
    assert len(image.datasets) == 1 and "PixelData" not in image.datasets[0]
    # frame_numbers: the (1-based) frame holding each slice, in slice order.
    assert image.frame_numbers == tuple(order.index(z) + 1 for z in range(9))


def test_explicit_series_and_load_image_for_dicom_and_nifti(tmp_path):
    soft = SeriesSpec(kernel="STANDARD", series_number=2)
    bone = replace(SeriesSpec(kernel="BONE", series_number=3), series_uid=generate_uid())
    write_series(tmp_path / "study", soft)
    write_series(tmp_path / "study", bone)
    image, selection = load_ct_image(tmp_path / "study", series_uid=bone.series_uid)
    assert selection.chosen == bone.series_uid and soft.series_uid in selection.rejected
    assert load_image(tmp_path / "study").series_instance_uid == soft.series_uid

    write_volume(tmp_path / "image.nii.gz", image.hu, image.geometry)
    nifti = load_image(tmp_path / "image.nii.gz")
    assert nifti.datasets == () and nifti.hu.dtype == np.int16
    np.testing.assert_array_equal(nifti.hu, image.hu)
    np.testing.assert_allclose(nifti.geometry.positions, image.geometry.positions, atol=1e-4)


def test_files_without_preamble_or_meta_header_are_read(tmp_path):
    spec = SeriesSpec()
    for path in write_series(tmp_path, spec):
        ds = pydicom.dcmread(path)
        del ds.file_meta
        ds.preamble = None
        ds.save_as(path, implicit_vr=True, little_endian=True)  # a bare dataset, as old archives hold
    image, _ = load_ct_image(tmp_path)
    np.testing.assert_array_equal(image.hu, spec.hu())


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=st.lists(st.floats(0.5, 8.0), min_size=7, max_size=11), tilt=st.floats(-25.0, 25.0),
       seed=st.integers(0, 1000))
def test_any_order_gaps_and_tilt_give_back_the_written_geometry(tmp_path_factory, gaps, tilt, seed):
    folder = tmp_path_factory.mktemp("random")
    spec = SeriesSpec(rows=16, columns=16, offsets_mm=list(np.concatenate([[0.0], np.cumsum(gaps)])),
                      orientation=tilted_orientation(tilt))
    write_series(folder, spec, seed=seed)
    image, _ = load_ct_image(folder)
    np.testing.assert_allclose(image.geometry.positions, spec.positions(), atol=1e-6)
    np.testing.assert_allclose(image.geometry.slice_gaps(), np.asarray(gaps) * np.cos(np.radians(tilt)),
                               atol=1e-6)
    np.testing.assert_array_equal(image.hu, spec.hu())
