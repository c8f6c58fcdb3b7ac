"""Source headers as the result objects need them.

The SEG and SR copy the patient and study modules from the source images, and highdicom reads each of those
attributes. Real scanners leave out some that are type 2 (required, may be empty), such as PatientBirthDate:
such a source gets them added as empty values, on a copy. A de-identified source that does not say how
(PatientIdentityRemoved YES, DeidentificationMethod empty: invalid, type 1C) gets "unspecified by the source"
rather than passing the error on to our objects.
"""

from __future__ import annotations

from pydicom import Dataset

# Type 2 attributes of the Patient, General Study and General Equipment modules that highdicom copies.
TYPE2_ATTRIBUTES = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)

UNSTATED_DEIDENTIFICATION = "unspecified by the source"


def _copy(ds: Dataset) -> Dataset:
    """A copy with its own element table (copy.copy would share it), elements themselves shared."""
    out = Dataset()
    out.update(ds)
    if hasattr(ds, "file_meta"):
        out.file_meta = ds.file_meta
    return out


def complete_sources(datasets: tuple[Dataset, ...] | list[Dataset]) -> list[Dataset]:
    """The source headers, each with any missing TYPE2_ATTRIBUTES present and empty."""
    completed = []
    for ds in datasets:
        missing = [keyword for keyword in TYPE2_ATTRIBUTES if keyword not in ds]
        method_unstated = (
            ds.get("PatientIdentityRemoved") == "YES"
            and not ds.get("DeidentificationMethod")
            and not ds.get("DeidentificationMethodCodeSequence")
        )
        if missing or method_unstated:
            ds = _copy(ds)
            for keyword in missing:
                setattr(ds, keyword, None)
            if method_unstated:
                ds.DeidentificationMethod = UNSTATED_DEIDENTIFICATION
        completed.append(ds)
    return completed
