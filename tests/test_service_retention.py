"""Retention on SQLite and (with ICHVOL_TEST_DATABASE_URL) PostgreSQL: the sweep removes the spool files and
result folders of finished studies past retention.days, keeps everything still in work, records the removal,
and a study sent again afterwards is stored and processed anew."""

from __future__ import annotations

import threading

import pytest
from service_support import db_url, make_config  # noqa: F401 - fixture
from sqlalchemy import select

from ichvol.config import Destination, RoutingConfig
from ichvol.db.engine import open_database
from ichvol.db.models import AuditEvent, Instance, Job, JobState, Send, SendState
from ichvol.db.queue import (
    InstanceOutcome,
    ReceivedInstance,
    add_sends,
    available_instances,
    claim_jobs,
    queue_stable_studies,
    record_instance,
    resubmit,
)
from ichvol.errors import InputError
from ichvol.listener.spool import Spool
from ichvol.service.report import study_report
from ichvol.service.retention import DAY_SECONDS, purge_expired, run_retention

CT = "1.2.840.10008.5.1.4.1.1.2"
ROUTING = RoutingConfig(min_slices=3)
T0 = 1_000_000.0


@pytest.fixture
def setup(tmp_path, db_url):  # noqa: F811
    config = make_config(tmp_path, db_url, retention__days="2")
    sessions = open_database(config.database_url)
    yield config, sessions, Spool(config.spool_dir)
    sessions.kw["bind"].dispose()


def receive(sessions, spool: Spool, study: str, count: int, at: float) -> list[str]:
    outcomes = []
    for i in range(count):
        relative, size = spool.write(f"{study}.{i}".encode() * 100)
        info = ReceivedInstance(study, f"{study}.1", f"{study}.{i}", CT, "CT", "HEAD", "AXIAL", "PID", "ACC")
        with sessions.begin() as s:
            outcome = record_instance(s, info, relative, size, at)
        if outcome != InstanceOutcome.STORED:
            spool.remove(relative)  # what the listener does with a duplicate
        outcomes.append(outcome)
    return outcomes


def finish_job(config, sessions, study: str, at: float, send_state: str | None = SendState.SENT) -> int:
    """Queue, claim and finish the study's job the way the worker does, with a result folder and one send."""
    with sessions.begin() as s:
        queue_stable_studies(s, 1.0, ROUTING, at)
    with sessions.begin() as s:
        [job] = [j for j in claim_jobs(s, "w", 60, 3, limit=10, now=at + 1) if j.study_uid == study]
        folder = config.results_dir / str(job.id)
        folder.mkdir(parents=True)
        (folder / "sr.dcm").write_bytes(b"SR")
        job.state, job.finished_at, job.lease_owner, job.result_dir = JobState.DONE, at + 2, None, str(folder)
        [send] = add_sends(s, job, [Destination()], [("SR", job.sr_sop_instance_uid, folder / "sr.dcm")], at + 2)
        if send_state is not None:
            send.state = send_state
        return job.id


def spool_files(sessions, study: str) -> list[str]:
    with sessions() as s:
        return list(s.scalars(select(Instance.spool_path).join(Instance.study).where(
            Instance.study.has(study_uid=study))))


def test_finished_studies_past_retention_lose_their_files_and_keep_their_record(setup):
    config, sessions, spool = setup
    receive(sessions, spool, "1.1", 4, T0)
    done = finish_job(config, sessions, "1.1", T0 + 10)
    receive(sessions, spool, "1.2", 4, T0)
    waiting = finish_job(config, sessions, "1.2", T0 + 10, send_state=SendState.PENDING)
    receive(sessions, spool, "1.4", 4, T0 + 3 * DAY_SECONDS)  # recent
    finish_job(config, sessions, "1.4", T0 + 3 * DAY_SECONDS + 10)
    receive(sessions, spool, "1.3", 4, T0)  # old, but not yet turned into a run

    assert purge_expired(config, sessions, now=T0 + 1.9 * DAY_SECONDS) == 0
    assert purge_expired(config, sessions, now=T0 + 3.5 * DAY_SECONDS) == 1
    assert not any(spool.path(p).exists() for p in spool_files(sessions, "1.1"))
    assert not (config.results_dir / str(done)).exists()
    for kept in ("1.2", "1.3", "1.4"):  # a result still to send, a study still to queue, a recent one
        assert all(spool.path(p).exists() for p in spool_files(sessions, kept)), kept
    assert (config.results_dir / str(waiting)).exists()

    with sessions.begin() as s:
        [report] = study_report(s, "1.1")
        assert (report["instances"], report["instances_removed_by_retention"]) == (4, 4)
        [event] = s.scalars(select(AuditEvent).where(AuditEvent.event == "study_purged"))
        assert event.study_uid == "1.1"
        assert event.details == {"instances": 4, "bytes": 4 * 500, "result_folders": 1, "retention_days": 2.0}
        assert available_instances(s, s.get(Job, done).study_id) == 0
    with sessions.begin() as s, pytest.raises(InputError, match="removed under the retention policy.*send the"):
        resubmit(s, "1.1")
    assert purge_expired(config, sessions, now=T0 + 4 * DAY_SECONDS) == 0  # nothing left to remove

    # The send goes through: that study's files go on the next sweep.
    with sessions.begin() as s:
        s.get(Send, s.scalar(select(Send.id).where(Send.job_id == waiting))).state = SendState.SENT
    assert purge_expired(config, sessions, now=T0 + 4 * DAY_SECONDS) == 1


def test_a_study_sent_again_after_removal_is_stored_and_run_again(setup):
    config, sessions, spool = setup
    receive(sessions, spool, "2.1", 4, T0)
    first = finish_job(config, sessions, "2.1", T0 + 10)
    assert purge_expired(config, sessions, now=T0 + 3 * DAY_SECONDS) == 1

    t1 = T0 + 5 * DAY_SECONDS
    assert receive(sessions, spool, "2.1", 4, t1) == [InstanceOutcome.STORED] * 4  # not taken for duplicates
    assert all(spool.path(p).exists() for p in spool_files(sessions, "2.1"))
    assert receive(sessions, spool, "2.1", 1, t1 + 1) == [InstanceOutcome.DUPLICATE]
    assert purge_expired(config, sessions, now=t1 + 3 * DAY_SECONDS) == 0  # a new run is due: kept
    with sessions.begin() as s:
        [job] = queue_stable_studies(s, 1.0, ROUTING, t1 + 10)
        assert (job.run_number, job.instance_count, job.state) == (2, 4, JobState.QUEUED)
        assert job.id != first
    with sessions.begin() as s:
        assert resubmit(s, "2.1").run_number == 3


def test_the_service_thread_sweeps_at_start(setup):
    config, sessions, spool = setup
    receive(sessions, spool, "3.1", 4, T0)  # received in 1970: long past retention
    finish_job(config, sessions, "3.1", T0 + 10)
    stop = threading.Event()
    stop.set()  # one sweep, then return
    run_retention(config, sessions, stop)
    assert not any(spool.path(p).exists() for p in spool_files(sessions, "3.1"))
