"""The worker: claims jobs under a lease (kept alive by a heartbeat), runs the pipeline, hands results to
the outbox. A worker that dies leaves a lease that expires; the job is then claimed again (bounded)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..config import Config
from ..db import audit
from ..db.models import Instance, Job, JobState
from ..db.queue import add_sends, claim_jobs, heartbeat, owned_job, release_for_retry, result_uids
from ..errors import InputError, NoSuitableSeriesError
from ..results import ResultUIDs
from .pipeline import PipelineResult, Segmenter, run_pipeline

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Heartbeat:
    """Extends the job's lease every heartbeat_seconds while the pipeline runs; notices a lost lease."""

    def __init__(self, worker: Worker, job_id: int):
        self.worker, self.job_id = worker, job_id
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        cfg = self.worker.config.worker
        while not self._stop.wait(cfg.heartbeat_seconds):
            try:
                with self.worker.sessions.begin() as session:
                    if not heartbeat(session, self.job_id, self.worker.owner, cfg.lease_seconds):
                        self.lost = True
                        log.error("job %d: lease lost to another worker", self.job_id)
                        return
            except Exception:  # noqa: BLE001 - try again on the next beat; the lease has slack
                log.exception("job %d: heartbeat failed", self.job_id)


class Worker:
    def __init__(self, config: Config, sessions: sessionmaker[Session], segmenter: Segmenter,
                 owner: str | None = None):
        self.config = config
        self.sessions = sessions
        self.segmenter = segmenter
        self.owner = owner or worker_id()

    def run(self, stop: threading.Event) -> None:
        log.info("worker %s polling for jobs", self.owner)
        while not stop.is_set():
            try:
                busy = self.process_available()
            except Exception:  # noqa: BLE001 - a database outage must not end the worker
                log.exception("worker pass failed")
                busy = False
            if not busy:
                stop.wait(self.config.worker.poll_seconds)

    def process_available(self) -> bool:
        """Claim up to batch_size jobs and run them; False when there was nothing to do."""
        cfg = self.config
        with self.sessions.begin() as session:
            jobs = claim_jobs(session, self.owner, cfg.worker.lease_seconds, cfg.job_retry.max_attempts,
                              cfg.worker.batch_size)
            work = [(job.id, job.study_uid, result_uids(job), self._files(session, job)) for job in jobs]
        for job_id, study_uid, uids, files in work:
            self._process(job_id, study_uid, uids, files)
        return bool(work)

    def _files(self, session: Session, job: Job) -> list[Path]:
        spool = self.config.spool_dir
        paths = session.scalars(select(Instance.spool_path).where(Instance.study_id == job.study_id,
                                                                  Instance.purged_at.is_(None)))
        return [spool / p for p in paths]

    def _process(self, job_id: int, study_uid: str, uids: ResultUIDs, files: list[Path]) -> None:
        log.info("job %d: study %s, %d instances", job_id, study_uid, len(files))
        work_dir = self.config.work_dir / str(job_id)
        out_dir = self.config.results_dir / str(job_id)
        error: tuple[str, str] | None = None
        rejected: tuple[str, str] | None = None
        result: PipelineResult | None = None
        with _Heartbeat(self, job_id) as beat:
            try:
                result = run_pipeline(files, work_dir, out_dir, uids, self.segmenter,
                                      self.config.routing.min_slices)
            except NoSuitableSeriesError as exc:
                reasons = "; ".join(f"{k}: {v}" for k, v in exc.reasons.items())
                rejected = ("NO_SUITABLE_SERIES", f"{exc}" + (f" ({reasons})" if reasons else ""))
            except InputError as exc:
                rejected = (type(exc).__name__, str(exc))
            except Exception as exc:  # noqa: BLE001 - recorded on the job and retried (bounded)
                log.exception("job %d failed", job_id)
                error = (type(exc).__name__, str(exc)[:2000])
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)
        now = time.time()
        with self.sessions.begin() as session:
            job = owned_job(session, job_id, self.owner)
            if job is None or beat.lost:
                log.error("job %d: lease lost, results discarded (another worker owns the job)", job_id)
                return
            if rejected is not None:
                job.state, job.finished_at, job.lease_owner = JobState.REJECTED, now, None
                job.error_code, job.error_message = rejected
                audit.record(session, "job_rejected", study_uid, job_id=job_id, reason=rejected[1])
                log.info("job %d rejected: %s", job_id, rejected[1])
            elif error is not None:
                release_for_retry(session, job, self.config.job_retry, *error, now=now)
            else:
                self._finish(session, job, result, out_dir, now)

    def _finish(self, session: Session, job: Job, result: PipelineResult, out_dir: Path, now: float) -> None:
        files = result.files
        started = job.started_at or now
        job.loaded_at = started + result.load_seconds
        job.inference_seconds = round(result.inference_seconds, 3)
        job.encoded_at = started + result.load_seconds + result.inference_seconds + result.encode_seconds
        job.state, job.finished_at, job.lease_owner, job.lease_expires_at = JobState.DONE, now, None, None
        job.error_code = job.error_message = None
        job.result_dir = str(out_dir)
        job.result = {
            **files.measurements.to_dict(),
            "series_uid": result.series_uid,
            "selection": result.selection,
            "algorithm": {"name": self.segmenter.algorithm.name, "version": self.segmenter.algorithm.version},
        }
        objects = [("SR", files.uids.sr_sop_instance_uid, files.sr_path)]
        if files.seg_path is not None:
            objects.insert(0, ("SEG", files.uids.seg_sop_instance_uid, files.seg_path))
        add_sends(session, job, self.config.destinations, objects, now)
        if not self.config.destinations:
            log.warning("job %d: no destinations configured, results kept in %s only", job.id, out_dir)
            job.sent_at = None
        audit.record(session, "job_finished", job.study_uid, job_id=job.id,
                     classification=files.measurements.classification(),
                     total_ml=round(files.measurements.total_ml, 3), inference_seconds=job.inference_seconds,
                     objects=[kind for kind, _, _ in objects])
        log.info("job %d done: %s, %.2f ml, inference %.1f s", job.id, files.measurements.classification(),
                 files.measurements.total_ml, result.inference_seconds)
