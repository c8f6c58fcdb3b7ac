"""The hemorrhage measurements as a Comprehensive 3D SR, TID 1500 Imaging Measurement Report (highdicom).

Content tree:
- one Volumetric ROI group (TID 1411) per SEG segment: finding type = the type's disorder, finding site = the
  segment's anatomic region, the referenced segment, and the measurements: Volume from the mask (cm3), ABC/2
  with plain C and with Kothari's weighted C (Volume of ellipsoid, method = which C), and A, B, C of the
  type's largest lesion (Long axis, Short axis, Height; mm; C once plain, once Kothari-weighted);
- one Measurements group without ROI (TID 1501) for the whole study: total volume, total ABC/2, and the
  qualitative evaluations "Intracranial hemorrhage: Present/Absent" and "Classification: <type> / mixed /
  no hemorrhage detected". An empty result gives this group alone, with total 0.
"""

from __future__ import annotations

import logging

import highdicom as hd
from pydicom import Dataset
from pydicom.uid import generate_uid

from ..errors import InputError
from ..image import CTImage
from ..labels import Hemorrhage
from ..measure import HemorrhageMeasurements, TypeMeasurement
from ..results import AlgorithmInfo, ResultUIDs
from . import codes
from .sources import complete_sources

logger = logging.getLogger(__name__)

SR_SERIES_NUMBER = 9902
SR_SERIES_DESCRIPTION = "ichvol hemorrhage volumetry report"


def _measurement(name, value: float, unit, method=None) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=round(float(value), 4), unit=unit, method=method)


def _type_measurements(measurement: TypeMeasurement) -> list[hd.sr.Measurement]:
    largest = measurement.largest.abc2
    return [
        _measurement(codes.VOLUME, measurement.volume_ml, codes.CUBIC_CENTIMETER),
        _measurement(codes.VOLUME_OF_ELLIPSOID, measurement.abc2_ml, codes.CUBIC_CENTIMETER, codes.ABC2_TADA),
        _measurement(
            codes.VOLUME_OF_ELLIPSOID, measurement.abc2_kothari_ml, codes.CUBIC_CENTIMETER, codes.ABC2_KOTHARI
        ),
        _measurement(codes.LONG_AXIS, largest.a_mm, codes.MILLIMETER),
        _measurement(codes.SHORT_AXIS, largest.b_mm, codes.MILLIMETER),
        _measurement(codes.HEIGHT, largest.c_mm, codes.MILLIMETER, codes.ABC2_TADA),
        _measurement(codes.HEIGHT, largest.c_kothari_mm, codes.MILLIMETER, codes.ABC2_KOTHARI),
    ]


def _segment_numbers(segmentation: Dataset) -> dict[Hemorrhage, tuple[int, str]]:
    """Segment number and tracking UID of each type, from the SEG's segment labels."""
    out = {}
    for item in segmentation.SegmentSequence:
        out[Hemorrhage[item.SegmentLabel]] = (int(item.SegmentNumber), str(item.TrackingUID))
    return out


def _roi_groups(segmentation: Dataset | None, measurements: HemorrhageMeasurements):
    types = measurements.types_present()
    if not types:
        return []
    if segmentation is None:
        raise InputError("hemorrhage was measured but no SEG was given to reference")
    segments = _segment_numbers(segmentation)
    missing = [t.name for t in types if t not in segments]
    if missing:
        raise InputError(f"the SEG has no segment for measured type(s) {', '.join(missing)}")
    groups = []
    for hemorrhage in types:
        number, tracking_uid = segments[hemorrhage]
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=hemorrhage.name),
                referenced_segment=hd.sr.ReferencedSegment.from_segmentation(
                    segmentation, segment_number=number
                ),
                finding_type=codes.DISORDER[hemorrhage],
                finding_sites=[hd.sr.FindingSite(codes.ANATOMIC_REGION[hemorrhage])],
                measurements=_type_measurements(measurements.per_type[hemorrhage]),
            )
        )
    return groups


def _study_group(measurements: HemorrhageMeasurements, uids: ResultUIDs):
    types = measurements.types_present()
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=[uids.sr_sop_instance_uid, "study"]), identifier="ALL"
        ),
        finding_type=codes.INTRACRANIAL_HEMORRHAGE,
        measurements=[
            _measurement(codes.VOLUME, measurements.total_ml, codes.CUBIC_CENTIMETER),
            _measurement(
                codes.VOLUME_OF_ELLIPSOID, measurements.total_abc2_ml, codes.CUBIC_CENTIMETER, codes.ABC2_TADA
            ),
            _measurement(
                codes.VOLUME_OF_ELLIPSOID,
                measurements.total_abc2_kothari_ml,
                codes.CUBIC_CENTIMETER,
                codes.ABC2_KOTHARI,
            ),
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                codes.INTRACRANIAL_HEMORRHAGE, codes.PRESENT if types else codes.ABSENT
            ),
            hd.sr.QualitativeEvaluation(codes.CLASSIFICATION, codes.classification_code(types)),
        ],
    )


def _observation_context(algorithm: AlgorithmInfo) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[algorithm.manufacturer, algorithm.name, algorithm.version]),
        name=algorithm.name,
        manufacturer_name=algorithm.manufacturer,
        model_name=algorithm.version,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
            observer_identifying_attributes=device,
        )
    )


def build_report(
    image: CTImage,
    segmentation: Dataset | None,
    measurements: HemorrhageMeasurements,
    uids: ResultUIDs,
    algorithm: AlgorithmInfo,
    series_number: int = SR_SERIES_NUMBER,
) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 report of `measurements` in the study of `image`; references the source images and SEG."""
    if not image.datasets:
        raise InputError("a DICOM SR needs the source DICOM series; this image has no DICOM headers")
    sources = complete_sources(image.datasets)
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(algorithm),
        procedure_reported=codes.CT_HEAD,
        imaging_measurements=[*_roi_groups(segmentation, measurements), _study_group(measurements, uids)],
        title=codes.IMAGING_MEASUREMENT_REPORT,
        referenced_images=sources,
    )
    evidence = [*sources, *([segmentation] if segmentation is not None else [])]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=uids.sr_series_uid,
        series_number=series_number,
        sop_instance_uid=uids.sr_sop_instance_uid,
        instance_number=1,
        manufacturer=algorithm.manufacturer,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SR_SERIES_DESCRIPTION,
    )
    logger.info("SR built: classification %s", measurements.classification())
    return sr
