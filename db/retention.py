"""Retention in the database: which studies' files may be removed, and the record that they were."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import audit
from .models import Instance, Job, JobState, Send, SendState, Study


@dataclass(frozen=True)
class StudyFiles:
    """What of one study is still on disk: spool files (relative to the spool) and result folders."""

    study_uid: str
    instance_ids: list[int]
    spool_paths: list[str]
    result_dirs: list[str]
    size_bytes: int


def _expired(cutoff: float):  # noqa: ANN202
    """Quiet since before `cutoff`, files left, and nothing to do: every instance is in a run, every run is
    final and no result is waiting to be sent."""
    has_files = select(Instance.id).where(Instance.study_id == Study.id, Instance.purged_at.is_(None))
    open_job = select(Job.id).where(Job.study_id == Study.id, Job.state.not_in(JobState.FINAL))
    open_send = select(Send.id).join(Job).where(
        Job.study_id == Study.id, Send.state.in_((SendState.PENDING, SendState.SENDING)))
    return (Study.last_received_at < cutoff, Study.queued_seq == Study.received_seq, has_files.exists(),
            ~open_job.exists(), ~open_send.exists())


def expired_study_ids(session: Session, cutoff: float) -> list[int]:
    return list(session.scalars(select(Study.id).where(*_expired(cutoff)).order_by(Study.last_received_at)))


def lock_expired_study(session: Session, study_id: int, cutoff: float) -> StudyFiles | None:
    """The study's files if it is (still) expired, with its row locked until the caller commits, so that an
    instance arriving meanwhile waits and is then stored again rather than taken for a duplicate."""
    study = session.scalar(select(Study).where(Study.id == study_id, *_expired(cutoff)).with_for_update())
    if study is None:
        return None
    rows = session.execute(select(Instance.id, Instance.spool_path, Instance.size_bytes).where(
        Instance.study_id == study_id, Instance.purged_at.is_(None))).all()
    result_dirs = session.scalars(select(Job.result_dir).where(Job.study_id == study_id,
                                                               Job.result_dir.is_not(None)))
    return StudyFiles(study.study_uid, [r.id for r in rows], [r.spool_path for r in rows], list(result_dirs),
                      sum(r.size_bytes for r in rows))


def mark_purged(session: Session, files: StudyFiles, now: float, retention_days: float) -> None:
    session.execute(update(Instance).where(Instance.id.in_(files.instance_ids)).values(purged_at=now))
    audit.record(session, "study_purged", files.study_uid, instances=len(files.instance_ids),
                 bytes=files.size_bytes, result_folders=len(files.result_dirs), retention_days=retention_days)
