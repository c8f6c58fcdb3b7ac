"""DICOM SR (TID 1500) writer: dciodvfy, highdicom read-back of every measurement and reference."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
from seg_sr_helpers import ct_image, ct_series, dciodvfy, ellipsoid_labels

from ichvol.errors import InputError
from ichvol.labels import Hemorrhage
from ichvol.measure import measure_labels
from ichvol.results import AlgorithmInfo, ResultUIDs
from ichvol.seg import build_segmentation
from ichvol.sr import build_report

# dciodvfy does not know the private coding scheme 99ICHVOL (PS3.16 allows local "99" schemes): the only
# warning accepted on the SR.
ACCEPTED_WARNING = "Unrecognized defined term = <99ICHVOL>"


def _write(image, labels, tmp_path):
    uids, algorithm = ResultUIDs.mint(), AlgorithmInfo(name="ichvol-test", version="0.9")
    measurements = measure_labels(labels, image.geometry)
    seg = build_segmentation(image, labels, uids, algorithm)
    sr = build_report(image, seg, measurements, uids, algorithm)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return path, seg, measurements, uids


def _check_valid(path):
    errors, warnings = dciodvfy(path)
    assert errors == [], errors
    assert [w for w in warnings if ACCEPTED_WARNING not in w] == []


@pytest.mark.parametrize("tilt", [0.0, 18.5])
def test_report_of_multi_type_map(tilt, tmp_path):
    image = ct_image(ct_series(tilt_degrees=tilt, gaps_mm=[5, 5, 2.5, 7.5, 5, 3, 5]))
    labels = ellipsoid_labels(image.hu.shape, (3, 20, 18), (2, 9, 7), Hemorrhage.IPH)
    labels = ellipsoid_labels(image.hu.shape, (5, 34, 14), (1.5, 5, 5), Hemorrhage.IVH, labels)
    labels = ellipsoid_labels(image.hu.shape, (6, 10, 30), (1, 4, 4), Hemorrhage.IPH, labels)  # a 2nd lesion
    path, seg, measurements, uids = _write(image, labels, tmp_path)
    _check_valid(path)

    sr = hd.sr.srread(path)
    source = image.datasets[0]
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    assert sr.SeriesInstanceUID == uids.sr_series_uid and sr.SOPInstanceUID == uids.sr_sop_instance_uid
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    evidence = {
        item.SeriesInstanceUID: {ref.ReferencedSOPInstanceUID for ref in item.ReferencedSOPSequence}
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for item in study.ReferencedSeriesSequence
    }
    assert evidence[source.SeriesInstanceUID] == {ds.SOPInstanceUID for ds in image.datasets}
    assert evidence[uids.seg_series_uid] == {uids.seg_sop_instance_uid}

    report = sr.content
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"
    procedures = [
        item.ConceptCodeSequence[0].CodeValue
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "121058"
    ]  # Procedure reported
    assert procedures == ["24725-4"]
    groups = report.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["IPH", "IVH"]
    for number, (group, hemorrhage) in enumerate(
        zip(groups, (Hemorrhage.IPH, Hemorrhage.IVH), strict=True), 1
    ):
        expected = measurements.per_type[hemorrhage]
        reference = group.referenced_segment
        assert reference.referenced_segment_numbers == [number]
        assert reference.referenced_sop_instance_uid == uids.seg_sop_instance_uid
        assert group.tracking_uid == seg.SegmentSequence[number - 1].TrackingUID
        assert group.tracking_identifier == seg.SegmentSequence[number - 1].TrackingID
        assert (
            group.finding_type.value == {Hemorrhage.IPH: "274100004", Hemorrhage.IVH: "274110009"}[hemorrhage]
        )
        values = {
            (m.name.value, m.method.value if m.method else None): (m.value, m.unit.value)
            for m in group.get_measurements()
        }
        largest = expected.largest.abc2
        assert values[("118565006", None)] == (pytest.approx(expected.volume_ml, abs=1e-4), "cm3")
        assert values[("121221", "ABC2")] == (pytest.approx(expected.abc2_ml, abs=1e-4), "cm3")
        assert values[("121221", "ABC2K")] == (pytest.approx(expected.abc2_kothari_ml, abs=1e-4), "cm3")
        assert values[("103339001", None)] == (pytest.approx(largest.a_mm, abs=1e-4), "mm")
        assert values[("103340004", None)] == (pytest.approx(largest.b_mm, abs=1e-4), "mm")
        assert values[("121207", "ABC2")] == (pytest.approx(largest.c_mm, abs=1e-4), "mm")
        assert values[("121207", "ABC2K")] == (pytest.approx(largest.c_kothari_mm, abs=1e-4), "mm")
    # the mask volume in the SR is the voxel count times the true voxel volume
    voxel_ml = image.geometry.voxel_volumes_ml()
    ipha = float(((labels == Hemorrhage.IPH).sum(axis=(1, 2)) * voxel_ml).sum())
    assert groups[0].get_measurements()[0].value == pytest.approx(ipha, abs=1e-4)

    (study_group,) = report.get_image_measurement_groups()
    total = {m.name.value: m.value for m in study_group.get_measurements() if m.method is None}
    assert total["118565006"] == pytest.approx(measurements.total_ml, abs=1e-4)
    evaluations = {q.name.value: q.value.value for q in study_group.get_qualitative_evaluations()}
    assert evaluations == {"1386000": "52101004", "278201002": "MIXED"}


def test_report_of_single_type_names_the_type(tmp_path):
    image = ct_image(ct_series(n_slices=5))
    labels = ellipsoid_labels(image.hu.shape, (2, 20, 20), (1, 8, 3), Hemorrhage.SDH)
    path, *_ = _write(image, labels, tmp_path)
    _check_valid(path)
    report = hd.sr.srread(path).content
    (group,) = report.get_volumetric_roi_measurement_groups()
    referenced = {
        item.referenced_sop_instance_uid for item in group.referenced_segment.source_images_for_segmentation
    }
    slices = np.flatnonzero((labels == Hemorrhage.SDH).any(axis=(1, 2)))
    assert referenced == {image.datasets[z].SOPInstanceUID for z in slices}
    (study_group,) = report.get_image_measurement_groups()
    evaluations = {q.name.value: q.value.value for q in study_group.get_qualitative_evaluations()}
    assert evaluations["278201002"] == "35486000"


def test_empty_result_says_no_hemorrhage(tmp_path):
    image = ct_image(ct_series(n_slices=4))
    path, seg, measurements, _ = _write(image, np.zeros(image.hu.shape, np.uint8), tmp_path)
    assert seg is None
    _check_valid(path)
    sr = hd.sr.srread(path)
    report = sr.content
    assert report.get_volumetric_roi_measurement_groups() == []
    (study_group,) = report.get_image_measurement_groups()
    assert {m.name.value: m.value for m in study_group.get_measurements()}["118565006"] == 0.0
    evaluations = {q.name.value: q.value for q in study_group.get_qualitative_evaluations()}
    assert evaluations["1386000"].value == "272519000"  # Absent
    assert evaluations["278201002"].meaning == "No hemorrhage detected"
    series = {
        item.SeriesInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for item in study.ReferencedSeriesSequence
    }
    assert series == {image.datasets[0].SeriesInstanceUID}


def test_measured_types_need_a_seg():
    image = ct_image(ct_series(n_slices=4))
    labels = ellipsoid_labels(image.hu.shape, (2, 20, 20), (1, 6, 6), Hemorrhage.IPH)
    with pytest.raises(InputError, match="no SEG"):
        build_report(image, None, measure_labels(labels, image.geometry), ResultUIDs.mint(), AlgorithmInfo())
