"""Series selection: what is rejected and why, and how qualifying series are ranked (B)."""

from __future__ import annotations

import pytest
from dicom_factory import SeriesSpec, write_secondary_capture, write_series
from pydicom.uid import generate_uid

from ichvol.dicom import KernelClass, classify_kernel, load_ct_image, read_study, select_series
from ichvol.errors import NoSuitableSeriesError


def spec(**changes) -> SeriesSpec:
    return SeriesSpec(series_uid=generate_uid(), **changes)


def test_realistic_study_picks_soft_original_axial_and_explains_the_rest(tmp_path):
    soft = spec(kernel="H31s", series_number=2)
    bone = spec(kernel="H70h", series_number=3)
    scout = spec(slices=2, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), orientation=(0, 1, 0, 0, 0, -1),
                 series_number=1)
    sagittal = spec(orientation=(0, 1, 0, 0, 0, -1), step_direction=(1, 0, 0), series_number=4,
                    image_type=("DERIVED", "SECONDARY", "REFORMATTED"))
    short = spec(slices=5, series_number=5)
    mip = spec(image_type=("DERIVED", "SECONDARY", "MIP"), series_number=6)
    for s in (soft, bone, scout, sagittal, short, mip):
        write_series(tmp_path, s)
    write_secondary_capture(tmp_path)
    scan = read_study(tmp_path)
    selection = select_series(scan)
    assert selection.chosen == soft.series_uid
    assert selection.candidates == (soft.series_uid, bone.series_uid)
    reasons = selection.rejected
    assert "localizer" in reasons[scout.series_uid]
    assert "not axial" in reasons[sagittal.series_uid]
    assert "5 slice positions, fewer than the 8" in reasons[short.series_uid]
    assert "maximum intensity projection" in reasons[mip.series_uid]
    assert "ranked below" in reasons[bone.series_uid] and "sharp" in reasons[bone.series_uid]
    (sc_uid,) = set(scan.series) - {s.series_uid for s in (soft, bone, scout, sagittal, short, mip)}
    assert "Secondary Capture Image Storage is not a CT image" in reasons[sc_uid]
    assert len(reasons) == len(scan.series) - 1


def test_bone_only_study_still_works_and_original_beats_reformat(tmp_path):
    bone = spec(kernel="BONE")
    write_series(tmp_path / "bone", bone)
    assert select_series(read_study(tmp_path / "bone")).chosen == bone.series_uid

    reformat = spec(kernel="SOFT", image_type=("DERIVED", "SECONDARY", "AXIAL"), slices=20)
    original = spec(kernel="SOFT", slices=10, series_number=7)
    write_series(tmp_path / "two", reformat)
    write_series(tmp_path / "two", original)
    assert select_series(read_study(tmp_path / "two")).chosen == original.series_uid

    soft_reformat = spec(kernel="UB", image_type=("DERIVED", "SECONDARY", "AXIAL"), series_number=8)
    bone_original = spec(kernel="YC", series_number=3)
    write_series(tmp_path / "three", soft_reformat)
    write_series(tmp_path / "three", bone_original)
    assert select_series(read_study(tmp_path / "three")).chosen == soft_reformat.series_uid


def test_tilted_series_within_limit_passes_min_slices_is_a_parameter(tmp_path):
    from dicom_factory import tilted_orientation

    tilted = spec(orientation=tilted_orientation(25.0), slices=6)
    write_series(tmp_path, tilted)
    with pytest.raises(NoSuitableSeriesError, match="fewer than the 8"):
        select_series(read_study(tmp_path))
    assert select_series(read_study(tmp_path), min_slices=6).chosen == tilted.series_uid
    with pytest.raises(NoSuitableSeriesError, match="not axial: slice normal 25.0 degrees"):
        select_series(read_study(tmp_path), min_slices=6, max_tilt_degrees=20)


def test_no_ct_at_all_lists_every_reason(tmp_path):
    mr = spec(modality="MR", sop_class="1.2.840.10008.5.1.4.1.1.4")
    write_series(tmp_path, mr)
    write_secondary_capture(tmp_path)
    write_secondary_capture(tmp_path, "ichvol report", "1.2.840.10008.5.1.4.1.1.88.34", "SR")
    write_secondary_capture(tmp_path, "ichvol seg", "1.2.840.10008.5.1.4.1.1.66.4", "SEG")
    with pytest.raises(NoSuitableSeriesError) as caught:
        load_ct_image(tmp_path)
    assert len(caught.value.reasons) == 4
    assert "Comprehensive 3D SR Storage is not a CT image" in str(caught.value)
    assert "Segmentation Storage is not a CT image" in str(caught.value)
    assert "MR Image Storage is not a CT image" in str(caught.value)
    assert "Secondary Capture" in str(caught.value)


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [("STANDARD", KernelClass.SOFT), ("SOFT", KernelClass.SOFT), ("STD+", KernelClass.SOFT),
     ("BONE", KernelClass.SHARP), ("BONEPLUS", KernelClass.SHARP), ("LUNG", KernelClass.SHARP),
     ("H31s", KernelClass.SOFT), ("Hr38", KernelClass.SOFT), ("J40s", KernelClass.SOFT),
     ("H70h", KernelClass.SHARP), ("Hr60", KernelClass.SHARP), ("Br64", KernelClass.SHARP),
     ("H50s", KernelClass.UNKNOWN), ("UB", KernelClass.SOFT), ("B", KernelClass.SOFT),
     ("YC", KernelClass.SHARP), ("D", KernelClass.SHARP), ("FC26", KernelClass.SOFT),
     ("FC30", KernelClass.SHARP), ("FC81", KernelClass.SHARP), ("", KernelClass.UNKNOWN),
     ("XYZ", KernelClass.UNKNOWN)],
)
def test_kernel_classes(kernel, expected):
    assert classify_kernel(kernel) == expected
