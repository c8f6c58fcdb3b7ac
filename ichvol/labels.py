"""The hemorrhage label map shared by the synthetic data, the model, the measures and the DICOM writers."""

from enum import IntEnum


class Hemorrhage(IntEnum):
    """Label values of a hemorrhage label map (0 is background)."""

    IPH = 1  # intraparenchymal
    IVH = 2  # intraventricular
    SAH = 3  # subarachnoid
    SDH = 4  # subdural
    EDH = 5  # epidural

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    @classmethod
    def parse_list(cls, text: str) -> list["Hemorrhage"]:
        """Parse "IPH,IVH" into members; raises ValueError naming the unknown type."""
        out = []
        for part in (p.strip().upper() for p in text.split(",")):
            if not part:
                continue
            if part not in cls.__members__:
                raise ValueError(f"unknown hemorrhage type {part!r}; expected some of {', '.join(cls.__members__)}")
            out.append(cls[part])
        return out


_DESCRIPTIONS = {
    Hemorrhage.IPH: "Intraparenchymal hemorrhage",
    Hemorrhage.IVH: "Intraventricular hemorrhage",
    Hemorrhage.SAH: "Subarachnoid hemorrhage",
    Hemorrhage.SDH: "Subdural hemorrhage",
    Hemorrhage.EDH: "Epidural hemorrhage",
}

BACKGROUND = 0
NUM_CLASSES = 1 + len(Hemorrhage)  # background + five types
