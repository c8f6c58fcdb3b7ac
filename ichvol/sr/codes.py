"""The coded concepts of ichvol's DICOM SEG and SR, in one place (see ../shared/docs/dicom-codes.md).

Codes marked "pydicom" are in pydicom 3.0's concept dictionary. Where no SNOMED CT code could be confirmed
(the subdural and epidural spaces as anatomy, the epidural hemorrhage disorder) we do not guess a number:
- anatomy of SDH and EDH: SCT 18545000 Dura mater (pydicom, CID 7151); the segment label, the property type
  and the SR finding carry which side of the dura the blood lies on;
- the EDH disorder and the three things no standard code names (the ABC/2 methods, "mixed", "no hemorrhage
  detected") use the private coding scheme 99ICHVOL, as DICOM PS3.16 allows for local concepts.
"""

from __future__ import annotations

from pydicom.sr.coding import Code

from ..labels import Hemorrhage

LOCAL_SCHEME = "99ICHVOL"

# SEG segment description
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")  # pydicom
HEMORRHAGE = Code("50960005", "SCT", "Hemorrhage")  # pydicom, CID 7151
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")  # pydicom, CID 7162

ANATOMIC_REGION = {
    Hemorrhage.IPH: Code("12738006", "SCT", "Brain"),  # pydicom
    Hemorrhage.IVH: Code("35764002", "SCT", "Brain ventricle"),  # pydicom
    Hemorrhage.SAH: Code("35951006", "SCT", "Subarachnoid space"),  # pydicom
    Hemorrhage.SDH: Code("18545000", "SCT", "Dura mater"),  # pydicom; see module docstring
    Hemorrhage.EDH: Code("18545000", "SCT", "Dura mater"),  # pydicom; see module docstring
}

# The disorder each segment shows: the SR's finding type of its ROI group.
DISORDER = {
    Hemorrhage.IPH: Code("274100004", "SCT", "Cerebral hemorrhage"),
    Hemorrhage.IVH: Code("274110009", "SCT", "Intraventricular hemorrhage"),
    Hemorrhage.SAH: Code("21454007", "SCT", "Subarachnoid intracranial hemorrhage"),
    Hemorrhage.SDH: Code("35486000", "SCT", "Subdural intracranial hemorrhage"),
    Hemorrhage.EDH: Code("EDH", LOCAL_SCHEME, "Epidural hemorrhage"),
}
INTRACRANIAL_HEMORRHAGE = Code("1386000", "SCT", "Intracranial hemorrhage")  # pydicom
MIXED_HEMORRHAGE = Code("MIXED", LOCAL_SCHEME, "Mixed intracranial hemorrhage")
NO_HEMORRHAGE_DETECTED = Code("NONE", LOCAL_SCHEME, "No hemorrhage detected")
PRESENT = Code("52101004", "SCT", "Present")  # pydicom
ABSENT = Code("272519000", "SCT", "Absent")  # pydicom
CLASSIFICATION = Code("278201002", "SCT", "Classification")  # pydicom

# SR document (TID 1500)
IMAGING_MEASUREMENT_REPORT = Code("126000", "DCM", "Imaging Measurement Report")  # pydicom
CT_HEAD = Code("24725-4", "LN", "CT Head")  # pydicom codes.LN.CTHeadReport

# Measurements. A and B are the greatest diameter on the slice of largest area and the greatest diameter
# perpendicular to it: exactly the long and short axis of a lesion (SCT 103339001/103340004, pydicom).
# C is the cranio-caudal extent along the slice normal: DCM 121207 Height (pydicom).
VOLUME = Code("118565006", "SCT", "Volume")  # pydicom; from the mask
VOLUME_OF_ELLIPSOID = Code("121221", "DCM", "Volume of ellipsoid")  # pydicom; ABC/2
LONG_AXIS = Code("103339001", "SCT", "Long axis")
SHORT_AXIS = Code("103340004", "SCT", "Short axis")
HEIGHT = Code("121207", "DCM", "Height")
ABC2_TADA = Code("ABC2", LOCAL_SCHEME, "ABC/2 (Tada), C = slices x spacing")
ABC2_KOTHARI = Code("ABC2K", LOCAL_SCHEME, "ABC/2 (Tada), C weighted per Kothari")

# Units (UCUM). CID 7462 has no "ml": 1 cm3 = 1 ml.
CUBIC_CENTIMETER = Code("cm3", "UCUM", "cubic centimeter")
MILLIMETER = Code("mm", "UCUM", "millimeter")


def classification_code(types: list[Hemorrhage]) -> Code:
    """The overall classification: the one type's disorder, mixed, or no hemorrhage detected."""
    if not types:
        return NO_HEMORRHAGE_DETECTED
    if len(types) == 1:
        return DISORDER[types[0]]
    return MIXED_HEMORRHAGE
