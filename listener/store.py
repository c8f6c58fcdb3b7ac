"""What happens to one C-STORE request: checks, durable spool write, database row, then the status.

Kept apart from the pynetdicom handlers so that it can be read (and tested) without a network.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from pydicom import Dataset
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..db import audit
from ..db.models import Instance
from ..db.queue import InstanceOutcome, ReceivedInstance, record_instance
from .spool import Spool

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


@dataclass
class AssociationTally:
    """Instances received on one association, per study and series: one audit event per study at the end."""

    calling_ae: str
    address: str
    counts: Counter = field(default_factory=Counter)  # (study, series, outcome) -> n


class InstanceStore:
    def __init__(self, spool: Spool, sessions: sessionmaker[Session], min_free_bytes: int):
        self.spool = spool
        self.sessions = sessions
        self.min_free_bytes = min_free_bytes

    def store(self, encoded: bytes, dataset: Dataset, tally: AssociationTally | None = None) -> int:
        """Store one instance; returns the DIMSE status to send back."""
        try:
            info = describe(dataset)
        except ValueError as exc:
            log.warning("C-STORE from %s refused: %s", tally.calling_ae if tally else "?", exc)
            return CANNOT_UNDERSTAND
        if self.spool.free_bytes() - len(encoded) < self.min_free_bytes:
            log.error("C-STORE refused: spool free space below the reserve")
            return OUT_OF_RESOURCES
        try:
            relative, size = self.spool.write(encoded)
        except OSError as exc:
            log.error("C-STORE refused: cannot write the spool file: %s", exc)
            return OUT_OF_RESOURCES
        try:
            outcome = self._record(info, relative, size)
        except Exception as exc:  # noqa: BLE001 - any database failure: the sender must try again later
            self.spool.remove(relative)
            log.error("C-STORE refused: cannot record the instance: %s", exc)
            return OUT_OF_RESOURCES
        if outcome != InstanceOutcome.STORED:
            self.spool.remove(relative)
        if tally is not None:
            tally.counts[(info.study_uid, info.series_uid, outcome)] += 1
        return SUCCESS

    def remove_unrecorded_files(self) -> int:
        """Remove spool files without an instance row. Only a listener killed between the rename and the
        database commit leaves one; that instance was never acknowledged, so its sender sends it again.
        Call before the listener accepts associations (no store is in flight then)."""
        with self.sessions() as session:
            recorded = set(session.scalars(select(Instance.spool_path)))
        orphans = self.spool.stored_files() - recorded
        for relative in orphans:
            self.spool.remove(relative)
        return len(orphans)

    def _record(self, info: ReceivedInstance, relative: str, size: int) -> str:
        for attempt in range(3):
            try:
                with self.sessions.begin() as session:
                    return record_instance(session, info, relative, size, time.time())
            except IntegrityError:
                # Two associations created the same study (or instance) at once: the retry sees their row.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def audit_association(self, tally: AssociationTally) -> None:
        per_study: dict[str, dict] = {}
        for (study, series, outcome), n in sorted(tally.counts.items()):
            entry = per_study.setdefault(study, {})
            entry.setdefault(series, {})[outcome] = n
        if not per_study:
            return
        with self.sessions.begin() as session:
            for study, series in per_study.items():
                audit.record(session, "instances_received", study, calling_ae=tally.calling_ae,
                             address=tally.address, series=series)
        for study, series in per_study.items():
            log.info("received from %s: study %s, %d series, %d instances", tally.calling_ae, study,
                     len(series), sum(sum(c.values()) for c in series.values()))


def describe(ds: Dataset) -> ReceivedInstance:
    """The identifying header fields of an instance; ValueError when it lacks the UIDs we need."""
    try:
        values = {kw: _text(ds.get(kw)) for kw in (
            "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality",
            "BodyPartExamined", "SeriesDescription", "PatientID", "AccessionNumber")}
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on malformed elements
        raise ValueError(f"dataset cannot be parsed: {type(exc).__name__}") from None
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not values[kw]:
            raise ValueError(f"{kw} missing")
        if len(values[kw]) > 64:
            raise ValueError(f"{kw} longer than 64 characters")
    return ReceivedInstance(
        study_uid=values["StudyInstanceUID"], series_uid=values["SeriesInstanceUID"],
        sop_instance_uid=values["SOPInstanceUID"], sop_class_uid=values["SOPClassUID"],
        modality=_cut(values["Modality"], 16), body_part=_cut(values["BodyPartExamined"], 64),
        series_description=_cut(values["SeriesDescription"], 128), patient_id=_cut(values["PatientID"], 64),
        accession_number=_cut(values["AccessionNumber"], 64),
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip().strip("\x00").strip()
    return text or None


def _cut(value: str | None, length: int) -> str | None:
    return value[:length] if value else value
