"""The durable queue: instances in, stable studies to jobs, jobs claimed under a lease, results to the outbox.

Claiming never gives one row to two workers. Every claim is one guarded UPDATE (... WHERE the row is still
claimable) whose row count says who won; on PostgreSQL the candidates are also picked with
SELECT ... FOR UPDATE SKIP LOCKED so that workers do not queue behind each other's rows.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from ..config import Destination, RetryPolicy, RoutingConfig
from ..errors import InputError
from ..results import ResultUIDs
from . import audit
from .models import Instance, Job, JobState, Send, SendState, Study


@dataclass(frozen=True)
class ReceivedInstance:
    """What the listener learnt from one instance's header; the spool file name is the listener's own."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str | None
    body_part: str | None
    series_description: str | None
    patient_id: str | None
    accession_number: str | None


class InstanceOutcome:
    STORED = "stored"
    DUPLICATE = "duplicate"  # same SOP Instance UID already in this study: not stored twice
    OWN_RESULT = "own_result"  # a SEG/SR we made, routed back to us: never queues a new run


def record_instance(session: Session, info: ReceivedInstance, spool_path: str, size: int, now: float) -> str:
    """Add the instance row (the caller commits, then acknowledges). Returns an InstanceOutcome."""
    own = session.scalar(
        select(Job.id).where(
            or_(Job.seg_sop_instance_uid == info.sop_instance_uid, Job.sr_sop_instance_uid == info.sop_instance_uid)
        ).limit(1)
    )
    if own is not None:
        return InstanceOutcome.OWN_RESULT
    # Locked: the retention sweep holds the lock while it removes the study's files (db/retention.py).
    study = session.scalar(select(Study).where(Study.study_uid == info.study_uid).with_for_update())
    if study is None:
        study = Study(
            study_uid=info.study_uid, patient_id=info.patient_id, accession_number=info.accession_number,
            first_received_at=now, last_received_at=now, received_seq=0, queued_seq=0,
        )
        session.add(study)
        session.flush()
    existing = session.scalar(
        select(Instance).where(Instance.study_id == study.id, Instance.sop_instance_uid == info.sop_instance_uid)
    )
    study.last_received_at = now  # a re-sent study is still "receiving": it keeps the study from turning stable
    if existing is not None and existing.purged_at is None:
        return InstanceOutcome.DUPLICATE
    if existing is not None:  # its file was removed under the retention policy: this copy takes its place
        existing.spool_path, existing.size_bytes, existing.received_at, existing.purged_at = (
            spool_path, size, now, None)
        study.received_seq = Study.received_seq + 1
        return InstanceOutcome.STORED
    session.add(Instance(
        study_id=study.id, sop_instance_uid=info.sop_instance_uid, series_uid=info.series_uid,
        sop_class_uid=info.sop_class_uid, modality=info.modality, body_part=info.body_part,
        series_description=info.series_description, spool_path=spool_path, size_bytes=size, received_at=now,
    ))
    study.received_seq = Study.received_seq + 1
    return InstanceOutcome.STORED


def routing_decision(session: Session, study_id: int, routing: RoutingConfig) -> tuple[bool, str]:
    """(process?, reason): the study is processed when at least one series passes every routing rule."""
    series: dict[str, list[Instance]] = defaultdict(list)
    for inst in session.scalars(select(Instance).where(Instance.study_id == study_id, Instance.purged_at.is_(None))):
        series[inst.series_uid].append(inst)
    reasons = []
    for uid, instances in series.items():
        first = instances[0]
        if (first.modality or "") not in routing.modalities:
            reasons.append(f"series {uid}: modality {first.modality or 'none'} not in {list(routing.modalities)}")
        elif routing.body_part_pattern and not re.search(routing.body_part_pattern, first.body_part or "", re.I):
            reasons.append(f"series {uid}: body part {first.body_part or 'none'!r} does not match the rule")
        elif routing.description_pattern and not re.search(
            routing.description_pattern, first.series_description or "", re.I
        ):
            reasons.append(f"series {uid}: description does not match the rule")
        elif len(instances) < routing.min_slices and not _is_multiframe(first):
            reasons.append(f"series {uid}: {len(instances)} instances, fewer than {routing.min_slices}")
        else:
            return True, ""
    return False, "; ".join(reasons) or "no instances"


def _is_multiframe(inst: Instance) -> bool:
    return inst.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT: one instance holds the volume


def queue_stable_studies(session: Session, stable_seconds: float, routing: RoutingConfig, now: float) -> list[Job]:
    """Create a job for every study that received new instances and has been quiet for `stable_seconds`."""
    due = session.execute(
        select(Study.id, Study.received_seq).where(
            Study.received_seq > Study.queued_seq, Study.last_received_at <= now - stable_seconds
        )
    ).all()
    jobs = []
    for study_id, seq in due:
        # Guarded so that two watchers (two listener processes) cannot queue the same run twice.
        claimed = session.execute(
            update(Study).where(Study.id == study_id, Study.queued_seq < seq, Study.received_seq == seq,
                                Study.last_received_at <= now - stable_seconds)
            .values(queued_seq=seq)
        ).rowcount
        if claimed == 1:
            jobs.append(create_job(session, session.get(Study, study_id), routing, now, reason="stable"))
    return jobs


def create_job(session: Session, study: Study, routing: RoutingConfig | None, now: float, reason: str) -> Job:
    """A new run of the study, with its result UIDs minted now. Routing may reject it at once."""
    run = (session.scalar(select(func.max(Job.run_number)).where(Job.study_id == study.id)) or 0) + 1
    uids = ResultUIDs.mint()
    count = available_instances(session, study.id)
    job = Job(
        study_id=study.id, study_uid=study.study_uid, run_number=run, state=JobState.QUEUED, attempts=0,
        not_before=0.0, seg_series_uid=uids.seg_series_uid, seg_sop_instance_uid=uids.seg_sop_instance_uid,
        sr_series_uid=uids.sr_series_uid, sr_sop_instance_uid=uids.sr_sop_instance_uid, instance_count=count,
        received_at=study.first_received_at, stable_at=now,
    )
    session.add(job)
    session.flush()
    audit.record(session, "job_created", study.study_uid, job_id=job.id, run=run, instances=count, reason=reason)
    if routing is not None:
        process, why = routing_decision(session, study.id, routing)
        if not process:
            job.state, job.error_code, job.error_message, job.finished_at = (
                JobState.REJECTED, "ROUTING", why, now)
            audit.record(session, "job_rejected", study.study_uid, job_id=job.id, reason=why)
    return job


def available_instances(session: Session, study_id: int) -> int:
    """Instances of the study whose files are in the spool (not removed under the retention policy)."""
    return session.scalar(select(func.count(Instance.id)).where(
        Instance.study_id == study_id, Instance.purged_at.is_(None))) or 0


def result_uids(job: Job) -> ResultUIDs:
    return ResultUIDs(job.seg_series_uid, job.seg_sop_instance_uid, job.sr_series_uid, job.sr_sop_instance_uid)


def _claimable(model: type[Job] | type[Send], now: float):  # noqa: ANN202
    waiting_state, running_state = (
        (JobState.QUEUED, JobState.RUNNING) if model is Job else (SendState.PENDING, SendState.SENDING)
    )
    due = model.not_before <= now if model is Job else model.next_attempt_at <= now
    return or_(
        and_(model.state == waiting_state, due),
        and_(model.state == running_state, model.lease_expires_at < now),  # its worker died: lease expired
    )


def _claim(session: Session, model: type[Job] | type[Send], owner: str, lease_seconds: float, limit: int,
           now: float, running_state: str) -> list[int]:
    query = select(model.id).where(_claimable(model, now)).order_by(model.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    won = []
    for row_id in session.scalars(query).all():
        count = session.execute(
            update(model).where(model.id == row_id, _claimable(model, now)).values(
                state=running_state, lease_owner=owner, lease_expires_at=now + lease_seconds,
                attempts=model.attempts + 1,
            )
        ).rowcount
        if count == 1:
            won.append(row_id)
    return won


def fail_exhausted_jobs(session: Session, max_attempts: int, now: float) -> None:
    """A job whose worker died on its last allowed attempt is FAILED rather than claimed again."""
    for job in session.scalars(select(Job).where(
        Job.state == JobState.RUNNING, Job.lease_expires_at < now, Job.attempts >= max_attempts
    )):
        job.state, job.finished_at, job.lease_owner = JobState.FAILED, now, None
        job.error_code = "LEASE_EXPIRED"
        job.error_message = f"worker lost the job {job.attempts} times (lease expired)"
        audit.record(session, "job_failed", job.study_uid, job_id=job.id, error=job.error_message)


def claim_jobs(session: Session, owner: str, lease_seconds: float, max_attempts: int, limit: int = 1,
               now: float | None = None) -> list[Job]:
    """Claim up to `limit` queued jobs (or jobs whose lease expired) for `owner`; the caller commits."""
    now = time.time() if now is None else now
    fail_exhausted_jobs(session, max_attempts, now)
    ids = _claim(session, Job, owner, lease_seconds, limit, now, JobState.RUNNING)
    jobs = [session.get(Job, i, populate_existing=True) for i in ids]
    for job in jobs:
        job.heartbeat_at = job.started_at = now
        audit.record(session, "job_started", job.study_uid, job_id=job.id, worker=owner, attempt=job.attempts)
    return jobs


def heartbeat(session: Session, job_id: int, owner: str, lease_seconds: float, now: float | None = None) -> bool:
    """Extend the lease; False when the job is no longer ours (lease expired and taken by another worker)."""
    now = time.time() if now is None else now
    return session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.state == JobState.RUNNING)
        .values(heartbeat_at=now, lease_expires_at=now + lease_seconds)
    ).rowcount == 1


def owned_job(session: Session, job_id: int, owner: str) -> Job | None:
    """The job, locked for update, if `owner` still holds its lease."""
    query = select(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.state == JobState.RUNNING)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalar(query.execution_options(populate_existing=True))


def release_leases(session: Session, owner: str, now: float | None = None) -> int:
    """On a clean shutdown: hand back what `owner` still holds, so it is taken up at once, not after its
    lease. The attempt stays counted. Returns how many jobs and sends were released."""
    now = time.time() if now is None else now
    jobs = session.execute(update(Job).where(Job.lease_owner == owner, Job.state == JobState.RUNNING).values(
        state=JobState.QUEUED, lease_owner=None, lease_expires_at=None, not_before=now,
        error_code="INTERRUPTED", error_message="worker shut down during the job")).rowcount
    sends = session.execute(update(Send).where(Send.lease_owner == owner, Send.state == SendState.SENDING).values(
        state=SendState.PENDING, lease_owner=None, lease_expires_at=None, next_attempt_at=now)).rowcount
    return jobs + sends


def release_for_retry(session: Session, job: Job, policy: RetryPolicy, code: str, message: str,
                      now: float) -> None:
    """A failed attempt: back to QUEUED after a backoff, or FAILED when the attempts are used up."""
    job.error_code, job.error_message, job.lease_owner, job.lease_expires_at = code, message, None, None
    if job.attempts >= policy.max_attempts:
        job.state, job.finished_at = JobState.FAILED, now
        audit.record(session, "job_failed", job.study_uid, job_id=job.id, error_code=code, error=message,
                     attempts=job.attempts)
    else:
        job.state, job.not_before = JobState.QUEUED, now + policy.delay(job.attempts)
        audit.record(session, "job_retry", job.study_uid, job_id=job.id, error_code=code, error=message,
                     attempts=job.attempts, retry_at=job.not_before)


def add_sends(session: Session, job: Job, destinations: Iterable[Destination],
              objects: Sequence[tuple[str, str, Path]], now: float) -> list[Send]:
    """One outbox row per destination and object (kind, SOP Instance UID, file)."""
    sends = []
    for dest in destinations:
        for kind, sop_uid, path in objects:
            send = Send(
                job_id=job.id, destination=dest.label, ae_title=dest.ae_title, host=dest.host, port=dest.port,
                tls=dest.tls, object_kind=kind, sop_instance_uid=sop_uid, path=str(path), state=SendState.PENDING,
                attempts=0, next_attempt_at=now, created_at=now,
            )
            session.add(send)
            sends.append(send)
    return sends


def claim_sends(session: Session, owner: str, lease_seconds: float, limit: int = 8,
                now: float | None = None) -> list[Send]:
    now = time.time() if now is None else now
    ids = _claim(session, Send, owner, lease_seconds, limit, now, SendState.SENDING)
    return [session.get(Send, i, populate_existing=True) for i in ids]


def record_send_result(session: Session, send: Send, status: int | None, error: str | None,
                       policy: RetryPolicy, now: float) -> None:
    """Success (status 0x0000 or a warning) marks it SENT; anything else retries with backoff, then FAILED."""
    send.last_status, send.last_error, send.lease_owner, send.lease_expires_at = status, error, None, None
    job = session.get(Job, send.job_id)
    details = dict(job_id=send.job_id, destination=send.destination, object=send.object_kind,
                   sop_instance_uid=send.sop_instance_uid, status=_hex(status), attempt=send.attempts)
    if error is None:
        send.state, send.sent_at = SendState.SENT, now
        audit.record(session, "result_sent", job.study_uid, **details)
        session.flush()
        if all(s.state == SendState.SENT for s in job.sends):
            job.sent_at = now
    elif send.attempts >= policy.max_attempts:
        send.state = SendState.FAILED
        audit.record(session, "send_failed", job.study_uid, error=error, **details)
    else:
        send.state, send.next_attempt_at = SendState.PENDING, now + policy.delay(send.attempts)
        audit.record(session, "send_retry", job.study_uid, error=error, retry_at=send.next_attempt_at, **details)


def _hex(status: int | None) -> str | None:
    return None if status is None else f"0x{status:04X}"


def find_studies(session: Session, key: str) -> list[Study]:
    """Studies whose Study Instance UID, accession number or patient ID is `key`."""
    return list(session.scalars(select(Study).where(
        or_(Study.study_uid == key, Study.accession_number == key, Study.patient_id == key)
    ).order_by(Study.first_received_at)))


def resubmit(session: Session, key: str, now: float | None = None) -> Job:
    """A new run of a study (by Study Instance UID or job id), queued regardless of routing."""
    now = time.time() if now is None else now
    study = session.scalar(select(Study).where(Study.study_uid == key))
    if study is None and key.isdigit():
        job = session.get(Job, int(key))
        study = job.study if job is not None else None
    if study is None:
        raise InputError(f"no study with Study Instance UID {key!r} and no job with that id")
    if available_instances(session, study.id) == 0:
        purged = session.scalar(select(func.max(Instance.purged_at)).where(Instance.study_id == study.id))
        raise InputError(
            f"study {study.study_uid}: its images were removed under the retention policy"
            + (f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(purged))})" if purged else "")
            + "; send the study to ichvol again to process it"
        )
    job = create_job(session, study, None, now, reason="resubmit")
    study.queued_seq = study.received_seq
    return job
