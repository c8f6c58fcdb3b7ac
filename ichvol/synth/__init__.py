"""Realistic synthetic head CT studies with hemorrhage labels (`ichvol synth`)."""

from .case import generate_case, label_volumes_ml
from .dataset import case_id, case_seed, write_case, write_dataset
from .dicom_writer import StudyIdentity, write_dicom_study
from .options import Acquisition, SynthCase, SynthOptions

__all__ = [
    "Acquisition", "StudyIdentity", "SynthCase", "SynthOptions", "case_id", "case_seed", "generate_case",
    "label_volumes_ml", "write_case", "write_dataset", "write_dicom_study",
]
