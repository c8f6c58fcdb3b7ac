"""Study completion: DICOM has no end-of-study signal, so a study is queued once it has been quiet for
`stable_seconds` (Orthanc's StableAge). Instances arriving after that queue a new run."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from ..config import Config
from ..db.models import Job, JobState
from ..db.queue import queue_stable_studies

log = logging.getLogger(__name__)


def queue_stable(config: Config, sessions: sessionmaker[Session], now: float | None = None) -> list[Job]:
    """One pass: create the jobs of studies that have become stable."""
    now = time.time() if now is None else now
    with sessions.begin() as session:
        jobs = queue_stable_studies(session, config.listener.stable_seconds, config.routing, now)
        for job in jobs:
            if job.state == JobState.REJECTED:
                log.info("study %s run %d rejected by routing: %s", job.study_uid, job.run_number, job.error_message)
            else:
                log.info("study %s stable: job %d queued (run %d, %d instances)", job.study_uid, job.id,
                         job.run_number, job.instance_count)
    return jobs


def watch(config: Config, sessions: sessionmaker[Session], stop: threading.Event) -> None:
    """Queue stable studies until `stop` is set. A database hiccup is logged and retried on the next pass."""
    while not stop.is_set():
        try:
            queue_stable(config, sessions)
        except Exception:  # noqa: BLE001 - the watcher must outlive a transient database error
            log.exception("stability watcher pass failed")
        stop.wait(config.listener.watch_interval_seconds)
