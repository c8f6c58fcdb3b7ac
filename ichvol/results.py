"""Identity and provenance of the result objects (SEG + SR) that ichvol writes for one study.

The caller mints the UIDs once and passes them in, so that a retried send carries the same SOP Instance UIDs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from pydicom.uid import generate_uid

from . import __version__
from .measure import HemorrhageMeasurements


@dataclass(frozen=True)
class ResultUIDs:
    seg_series_uid: str
    seg_sop_instance_uid: str
    sr_series_uid: str
    sr_sop_instance_uid: str

    @classmethod
    def mint(cls) -> ResultUIDs:
        return cls(generate_uid(), generate_uid(), generate_uid(), generate_uid())

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class AlgorithmInfo:
    """Who made the segmentation: goes into the SEG's algorithm identification and the SR's observer."""

    name: str = "ichvol-manual"
    version: str = __version__
    manufacturer: str = "ichvol"
    automatic: bool = True  # False for `encode` of a reference annotation


@dataclass(frozen=True)
class ResultFiles:
    seg_path: Path | None  # None when there is no hemorrhage (a SEG needs at least one segment)
    sr_path: Path
    measurements: HemorrhageMeasurements
    uids: ResultUIDs
