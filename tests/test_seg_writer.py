"""DICOM SEG writer: dciodvfy, highdicom read-back and dcmqi decoding on untilted, tilted, unevenly spaced
and enhanced (multi-frame) sources."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
from seg_sr_helpers import ct_image, ct_series, dciodvfy, dcmqi_voxel_counts, ellipsoid_labels

from ichvol.errors import InputError
from ichvol.image import CTImage
from ichvol.labels import Hemorrhage
from ichvol.results import AlgorithmInfo, ResultUIDs
from ichvol.seg import build_segmentation, segment_tracking_uid

CASES = {
    "untilted": {},
    "tilted": {"tilt_degrees": 18.5},
    "uneven-gaps": {"gaps_mm": [5.0, 5.0, 2.5, 7.5, 5.0, 3.0, 5.0]},
}


def multi_type_labels(shape) -> np.ndarray:
    labels = ellipsoid_labels(shape, (3, 20, 18), (2, 9, 7), Hemorrhage.IPH)
    labels = ellipsoid_labels(shape, (5, 32, 14), (1.5, 5, 5), Hemorrhage.IVH, labels)
    labels[1:7, 5:40, 36:39] = Hemorrhage.SDH  # a thin band along one side
    return labels


@pytest.fixture(params=sorted(CASES))
def case(request):
    datasets = ct_series(**CASES[request.param])
    image = ct_image(datasets)
    return request.param, image, multi_type_labels(image.hu.shape)


def test_seg_valid_and_reads_back_to_same_masks(case, tmp_path):
    name, image, labels = case
    uids = ResultUIDs.mint()
    seg = build_segmentation(image, labels, uids, AlgorithmInfo(name="ichvol-test", version="1.2"))
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)

    errors, warnings = dciodvfy(path)
    assert errors == [], errors
    assert warnings == [], warnings  # none accepted for the SEG

    back = hd.seg.segread(path)
    assert back.SegmentationType == "BINARY"
    types = [Hemorrhage.IPH, Hemorrhage.IVH, Hemorrhage.SDH]
    assert [item.SegmentLabel for item in back.SegmentSequence] == [t.name for t in types]
    source_uids = [str(ds.SOPInstanceUID) for ds in image.datasets]
    masks = back.get_pixels_by_source_instance(
        source_uids, segment_numbers=[1, 2, 3], assert_missing_frames_are_empty=True
    )
    for number, hemorrhage in enumerate(types):
        assert np.array_equal(masks[..., number].astype(bool), labels == hemorrhage), (name, hemorrhage)

    # empty frames are omitted: one frame per (slice, segment) pair that holds the segment
    expected_frames = sum(int(np.any(labels[z] == t)) for z in range(labels.shape[0]) for t in types)
    assert int(back.NumberOfFrames) == expected_frames

    # same study and patient as the source, own series, the source series referenced (OHIF needs it)
    source = image.datasets[0]
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber", "FrameOfReferenceUID"):
        assert back[keyword].value == source[keyword].value, keyword
    assert back.SeriesInstanceUID == uids.seg_series_uid
    assert back.SOPInstanceUID == uids.seg_sop_instance_uid
    referenced = back.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == set(
        source_uids
    )

    segment = back.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentAlgorithmName == "ichvol-test"
    identification = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert identification.AlgorithmVersion == "1.2"
    assert identification.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "50960005"
    assert segment.AnatomicRegionSequence[0].CodeValue == "12738006"
    assert segment.TrackingUID == segment_tracking_uid(uids, Hemorrhage.IPH)

    # as dcmqi writes it: the segment identified per frame, ContentCreatorName present (type 2)
    assert all("SegmentIdentificationSequence" in frame for frame in back.PerFrameFunctionalGroupsSequence)
    assert "ContentCreatorName" in back

    # plane positions are the source slices' own positions (tilt and gaps kept exactly)
    positions = [tuple(np.round(np.asarray(ds.ImagePositionPatient, float), 4)) for ds in image.datasets]
    for frame in back.PerFrameFunctionalGroupsSequence:
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        assert tuple(np.round(np.asarray(position, float), 4)) in positions

    # dcmqi decodes onto an ITK grid, which cannot shear: on a tilted series it places each frame at its
    # origin's index, which works while the shear stays inside the grid (as here, shifted toward +rows) and
    # fails ("Frame origin outside image geometry") when it runs the other way; see the report.
    counts = dcmqi_voxel_counts(path, tmp_path / "dcmqi")
    assert counts == {t.name: int(np.count_nonzero(labels == t)) for t in types}


def test_no_hemorrhage_gives_no_seg():
    image = ct_image(ct_series(n_slices=3))
    assert (
        build_segmentation(image, np.zeros(image.hu.shape, np.uint8), ResultUIDs.mint(), AlgorithmInfo())
        is None
    )


def test_manual_annotation_is_marked_manual(tmp_path):
    image = ct_image(ct_series(n_slices=4))
    labels = ellipsoid_labels(image.hu.shape, (2, 20, 20), (1, 6, 6), Hemorrhage.EDH)
    seg = build_segmentation(image, labels, ResultUIDs.mint(), AlgorithmInfo(automatic=False))
    seg.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    errors, _ = dciodvfy(tmp_path / "seg.dcm")
    assert errors == []
    segment = hd.seg.segread(tmp_path / "seg.dcm").SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "MANUAL"
    assert segment.SegmentLabel == "EDH"
    assert "SegmentationAlgorithmIdentificationSequence" not in segment


def test_enhanced_multiframe_source(tmp_path):
    datasets = ct_series(n_slices=6, tilt_degrees=12.0)
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets[::-1],
        series_instance_uid=hd.UID(),
        series_number=3,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    # The image's slices map to the enhanced instance's frames through frame_numbers (found by position).
    classic = ct_image(datasets)
    header = enhanced.copy()
    del header.PixelData
    n = len(datasets)
    frame_of_slice = []
    for ds in datasets:
        for frame_index, frame in enumerate(enhanced.PerFrameFunctionalGroupsSequence, start=1):
            if np.allclose(frame.PlanePositionSequence[0].ImagePositionPatient, ds.ImagePositionPatient):
                frame_of_slice.append(frame_index)
    assert sorted(frame_of_slice) == list(range(1, n + 1))
    image = CTImage(classic.hu, classic.geometry, (header,), tuple(frame_of_slice))
    labels = ellipsoid_labels(image.hu.shape, (2, 22, 20), (1.5, 8, 6), Hemorrhage.SAH)

    seg = build_segmentation(image, labels, ResultUIDs.mint(), AlgorithmInfo())
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)
    errors, _ = dciodvfy(path)
    assert errors == [], errors
    back = hd.seg.segread(path)
    assert back.ReferencedSeriesSequence[0].SeriesInstanceUID == enhanced.SeriesInstanceUID
    masks = back.get_pixels_by_source_frame(
        source_sop_instance_uid=enhanced.SOPInstanceUID,
        source_frame_numbers=list(frame_of_slice),
        segment_numbers=[1],
        assert_missing_frames_are_empty=True,
    )
    assert np.array_equal(masks[..., 0].astype(bool), labels == Hemorrhage.SAH)
    assert dcmqi_voxel_counts(path, tmp_path / "dcmqi") == {"SAH": int(np.count_nonzero(labels))}


def test_wrong_shape_is_an_input_error():
    image = ct_image(ct_series(n_slices=3))
    with pytest.raises(InputError, match="does not match"):
        build_segmentation(image, np.ones((2, 3, 4), np.uint8), ResultUIDs.mint(), AlgorithmInfo())


def test_incomplete_deidentified_source_gives_valid_objects(tmp_path):
    """Real de-identified series lack type 2 patient attributes and leave DeidentificationMethod empty."""
    from seg_sr_helpers import ct_series as series

    from ichvol.measure import measure_labels
    from ichvol.sr import build_report

    datasets = series(n_slices=4)
    for ds in datasets:
        del ds.PatientBirthDate, ds.PatientSex, ds.StudyID
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = None
    image = ct_image(datasets)
    labels = ellipsoid_labels(image.hu.shape, (2, 20, 20), (1, 6, 6), Hemorrhage.IVH)
    uids, algorithm = ResultUIDs.mint(), AlgorithmInfo()
    seg = build_segmentation(image, labels, uids, algorithm)
    sr = build_report(image, seg, measure_labels(labels, image.geometry), uids, algorithm)
    for name, dataset in (("seg.dcm", seg), ("sr.dcm", sr)):
        dataset.save_as(tmp_path / name, enforce_file_format=True)
        assert dciodvfy(tmp_path / name)[0] == [], name
        assert "PatientBirthDate" in dataset and not dataset.PatientBirthDate
        assert dataset.DeidentificationMethod == "unspecified by the source"
    assert "PatientBirthDate" not in datasets[0]  # the caller's headers are left as they were
