"""A hemorrhage label map as a BINARY DICOM Segmentation (highdicom), one segment per type present."""

from __future__ import annotations

import copy
import logging

import highdicom as hd
import numpy as np
from pydicom.uid import generate_uid

from ..errors import InputError
from ..image import CTImage
from ..labels import Hemorrhage
from ..results import AlgorithmInfo, ResultUIDs
from ..sr import codes
from ..sr.sources import complete_sources

logger = logging.getLogger(__name__)

SEG_SERIES_NUMBER = 9901
SEG_SERIES_DESCRIPTION = "ichvol hemorrhage segmentation"

# Viewer display colours (sRGB) of the five types, so that all viewers show the same colour per type.
_DISPLAY_RGB = {
    Hemorrhage.IPH: (220, 40, 40),
    Hemorrhage.IVH: (40, 120, 230),
    Hemorrhage.SAH: (240, 200, 30),
    Hemorrhage.SDH: (40, 190, 80),
    Hemorrhage.EDH: (200, 60, 220),
}


def segment_tracking_uid(uids: ResultUIDs, hemorrhage: Hemorrhage) -> str:
    """The tracking UID of a type's segment, derived from the SEG's UID: the SR's ROI group uses the same."""
    return generate_uid(entropy_srcs=[uids.seg_sop_instance_uid, hemorrhage.name])


def segment_descriptions(
    types: list[Hemorrhage], algorithm: AlgorithmInfo, uids: ResultUIDs
) -> list[hd.seg.SegmentDescription]:
    """Segment n (from 1) describes types[n - 1]."""
    if algorithm.automatic:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        identification = hd.AlgorithmIdentificationSequence(
            name=algorithm.name, family=codes.ARTIFICIAL_INTELLIGENCE, version=algorithm.version
        )
    else:  # a reference annotation brought into DICOM by `ichvol encode --manual`
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.MANUAL
        identification = None
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=hemorrhage.name,
            segmented_property_category=codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
            segmented_property_type=codes.HEMORRHAGE,
            algorithm_type=algorithm_type,
            algorithm_identification=identification,
            tracking_id=hemorrhage.name,  # the SR ROI group uses the same tracking identifier
            tracking_uid=segment_tracking_uid(uids, hemorrhage),
            anatomic_regions=[codes.ANATOMIC_REGION[hemorrhage]],
            display_color=hd.color.CIELabColor.from_rgb(*_DISPLAY_RGB[hemorrhage]),
        )
        for number, hemorrhage in enumerate(types, start=1)
    ]


def _per_source_frame(image: CTImage, labels: np.ndarray) -> np.ndarray:
    """The label map laid out as the source frames: per instance for a classic series, per frame of the one
    enhanced instance (frames that are not part of the volume stay empty)."""
    if not image.frame_numbers:
        return labels
    n_frames = int(image.datasets[0].NumberOfFrames)
    framed = np.zeros((n_frames, *labels.shape[1:]), dtype=labels.dtype)
    for slice_index, frame_number in enumerate(image.frame_numbers):
        framed[frame_number - 1] = labels[slice_index]
    return framed


def _segment_identification_per_frame(segmentation: hd.seg.Segmentation) -> None:
    """Move a one-segment SEG's SegmentIdentificationSequence from the shared to the per-frame functional
    groups. Both are valid; per frame is what dcmqi writes and what readers (highdicom 0.28's
    ReferencedSegment.from_segmentation among them) expect."""
    shared = segmentation.SharedFunctionalGroupsSequence[0]
    if "SegmentIdentificationSequence" not in shared:
        return
    identification = shared.SegmentIdentificationSequence
    del shared.SegmentIdentificationSequence
    for frame in segmentation.PerFrameFunctionalGroupsSequence:
        frame.SegmentIdentificationSequence = copy.deepcopy(identification)


def build_segmentation(
    image: CTImage,
    labels: np.ndarray,
    uids: ResultUIDs,
    algorithm: AlgorithmInfo,
    series_number: int = SEG_SERIES_NUMBER,
) -> hd.seg.Segmentation | None:
    """A BINARY SEG of `labels` (0 background, 1..5 Hemorrhage) on the source series of `image`.

    Returns None when no hemorrhage is labelled: a SEG needs at least one segment (the SR says so instead).
    Empty frames are omitted; the planes are the source planes, so tilted (sheared) stacks and uneven gaps
    are represented exactly.
    """
    if not image.datasets:
        raise InputError("a DICOM SEG needs the source DICOM series; this image has no DICOM headers")
    if labels.shape != image.hu.shape:
        raise InputError(f"label map shape {labels.shape} does not match the image shape {image.hu.shape}")
    types = [h for h in Hemorrhage if np.any(labels == h)]
    if not types:
        logger.info("no hemorrhage labelled: no SEG written")
        return None

    framed = _per_source_frame(image, labels)
    # One binary mask per segment, stacked along the last axis: (frames, rows, columns, segments).
    masks = np.stack([framed == h for h in types], axis=-1).astype(np.uint8)
    segmentation = hd.seg.Segmentation(
        source_images=complete_sources(image.datasets),
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(types, algorithm, uids),
        series_instance_uid=uids.seg_series_uid,
        series_number=series_number,
        sop_instance_uid=uids.seg_sop_instance_uid,
        instance_number=1,
        manufacturer=algorithm.manufacturer,
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        device_serial_number="0",
        content_label="HEMORRHAGE",
        content_description="Intracranial hemorrhage by type",
        omit_empty_frames=True,
        series_description=SEG_SERIES_DESCRIPTION,
    )
    _segment_identification_per_frame(segmentation)
    if "ContentCreatorName" not in segmentation:
        segmentation.ContentCreatorName = None  # type 2 in the Content Identification Macro (dcmqi warns)
    logger.info("SEG built: %d segment(s), %d frame(s)", len(types), int(segmentation.NumberOfFrames))
    return segmentation
