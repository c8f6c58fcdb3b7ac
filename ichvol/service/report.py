"""What `ichvol report` shows, as plain data (the CLI renders it with rich or as JSON)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..db import audit
from ..db.models import Job, JobState, Send, SendState, Study
from ..db.queue import find_studies
from ..errors import InputError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> float:
    """'24h', '30m', '7d' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise InputError(f"--since: expected a duration such as 30m, 24h or 7d, got {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def job_dict(job: Job) -> dict:
    def rel(t: float | None) -> float | None:
        return None if t is None or job.stable_at is None else round(t - job.stable_at, 3)

    return {
        "job_id": job.id,
        "run": job.run_number,
        "state": job.state,
        "attempts": job.attempts,
        "error_code": job.error_code,
        "error": job.error_message,
        "instances": job.instance_count,
        "timings": {
            "received": iso(job.received_at), "stable": iso(job.stable_at), "started": iso(job.started_at),
            "inference_seconds": job.inference_seconds, "encoded": iso(job.encoded_at),
            "finished": iso(job.finished_at), "sent": iso(job.sent_at),
            "seconds_after_stable": {"started": rel(job.started_at), "encoded": rel(job.encoded_at),
                                     "sent": rel(job.sent_at)},
        },
        "result": job.result,
        "uids": {"seg_series": job.seg_series_uid, "seg_sop_instance": job.seg_sop_instance_uid,
                 "sr_series": job.sr_series_uid, "sr_sop_instance": job.sr_sop_instance_uid},
        "sends": [{"destination": s.destination, "object": s.object_kind, "sop_instance_uid": s.sop_instance_uid,
                   "state": s.state, "attempts": s.attempts,
                   "status": None if s.last_status is None else f"0x{s.last_status:04X}",
                   "error": s.last_error, "sent": iso(s.sent_at)} for s in job.sends],
    }


def study_report(session: Session, key: str) -> list[dict]:
    """Every study matching `key` (Study Instance UID, accession number or patient ID) with its jobs and
    audit trail. The query itself is audited."""
    studies = find_studies(session, key)
    if not studies:
        raise InputError(f"no study with Study Instance UID, accession number or patient ID {key!r}")
    for study in studies:
        audit.record(session, "report_queried", study.study_uid, query="study")
    return [{
        "study_uid": study.study_uid,
        "accession_number": study.accession_number,
        "patient_id": study.patient_id,
        "first_received": iso(study.first_received_at),
        "last_received": iso(study.last_received_at),
        "instances": len(study.instances),
        "instances_removed_by_retention": sum(1 for i in study.instances if i.purged_at is not None),
        "jobs": [job_dict(job) for job in study.jobs],
        "audit": [{"time": iso(e.at), "event": e.event, "details": e.details}
                  for e in audit.trail(session, study.study_uid)],
    } for study in studies]


def recent_jobs(session: Session, since_seconds: float, status: str | None) -> list[dict]:
    """Jobs created in the last `since_seconds`, newest first, optionally only those in state `status`
    ("failed" includes DONE jobs with a send that failed for good)."""
    query = select(Job).where(Job.stable_at >= time.time() - since_seconds).order_by(Job.id.desc())
    if status and status.upper() == JobState.FAILED:
        # "failed" also means results that never reached a destination, though the job itself is DONE.
        query = query.where(or_(Job.state == JobState.FAILED, Job.sends.any(Send.state == SendState.FAILED)))
    elif status:
        query = query.where(Job.state == status.upper())
    jobs = list(session.scalars(query))
    audit.record(session, "report_queried", None, query="list", since_seconds=since_seconds, status=status)
    rows = []
    for job in jobs:
        study: Study = job.study
        rows.append({"study_uid": job.study_uid, "accession_number": study.accession_number, **job_dict(job)})
    return rows
