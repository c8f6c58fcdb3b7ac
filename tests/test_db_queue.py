"""The durable queue on SQLite and (with ICHVOL_TEST_DATABASE_URL) PostgreSQL: migrations, stability,
runs, routing, claiming under leases, retries, the outbox and the append-only audit trail."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from service_support import db_url  # noqa: F401 - fixture
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from ichvol.config import RetryPolicy, RoutingConfig
from ichvol.db.engine import open_database
from ichvol.db.models import AuditEvent, Base, Job, JobState, Send, SendState
from ichvol.db.queue import (
    InstanceOutcome,
    ReceivedInstance,
    add_sends,
    claim_jobs,
    claim_sends,
    heartbeat,
    queue_stable_studies,
    record_instance,
    record_send_result,
    release_for_retry,
    resubmit,
)
from ichvol.errors import InputError

ROUTING = RoutingConfig(min_slices=3)
CT = "1.2.840.10008.5.1.4.1.1.2"


def instance(study: str, sop: str, series: str = "1.2.3.1", modality: str = "CT") -> ReceivedInstance:
    return ReceivedInstance(study, series, sop, CT, modality, "HEAD", "AXIAL", "PID", "ACC")


def receive(sessions, study: str, count: int, at: float, start: int = 0, **kw) -> list[str]:
    outcomes = []
    with sessions.begin() as s:
        for i in range(start, start + count):
            outcomes.append(record_instance(s, instance(study, f"{study}.{i}", **kw), f"aa/{study}.{i}", 1, at))
    return outcomes


def queue(sessions, now: float, stable: float = 2.0) -> list[tuple[int, str, int]]:
    with sessions.begin() as s:
        return [(j.id, j.state, j.run_number) for j in queue_stable_studies(s, stable, ROUTING, now)]


@pytest.fixture
def sessions(db_url):  # noqa: F811
    factory = open_database(db_url)
    yield factory
    factory.kw["bind"].dispose()


def test_migrations_match_the_models(sessions):
    with sessions.kw["bind"].connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == []
    open_database(str(sessions.kw["bind"].url.render_as_string(hide_password=False)))  # upgrade is idempotent


def test_opening_a_new_sqlite_file_waits_for_another_writer_before_switching_to_wal(tmp_path):
    """A file another process has just created (still in rollback mode) and is writing to: the switch to WAL
    needs the file to itself and SQLite does not wait on the busy timeout for it, so opening waits and retries
    (before, it failed at once with "database is locked": the listener and the worker starting together)."""
    path = tmp_path / "ichvol.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other_writer (x)")
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(1.0, other.execute, ["COMMIT"]).start()
    sessions = open_database(f"sqlite:///{path}")
    with sessions.begin() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    sessions.kw["bind"].dispose()
    other.close()


OPEN_AT = """
import sys, time
from ichvol.db.engine import open_database
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
open_database(sys.argv[1])
"""


def test_services_starting_together_on_a_new_database_all_start(db_url):  # noqa: F811
    """A listener and workers started at once on a new schema each run the migrations: on PostgreSQL all but
    one failed on creating the same table (UniqueViolation) before the advisory lock; with 10 processes this
    test failed in 6 runs of 6 without it."""
    at = time.time() + 3.0  # the same instant for all, after their imports
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_AT, db_url, str(at)], stderr=subprocess.PIPE,
                                  text=True) for _ in range(10)]
    failures = [stderr for p in processes for _, stderr in [p.communicate(timeout=120)] if p.returncode != 0]
    assert failures == [], failures[0][-2000:]


def test_study_is_queued_once_when_quiet_and_rerun_after_new_instances(sessions):
    t0 = 1000.0
    assert receive(sessions, "1.9", 5, t0) == [InstanceOutcome.STORED] * 5
    assert queue(sessions, t0 + 1) == []  # still receiving
    [(job_id, state, run)] = queue(sessions, t0 + 3)
    assert (state, run) == (JobState.QUEUED, 1)
    assert queue(sessions, t0 + 10) == []  # nothing new: no second job
    # The same study re-sent: duplicates are not stored and queue nothing.
    assert receive(sessions, "1.9", 5, t0 + 20) == [InstanceOutcome.DUPLICATE] * 5
    assert queue(sessions, t0 + 30) == []
    # New instances after processing: a new run.
    assert receive(sessions, "1.9", 2, t0 + 40, start=5) == [InstanceOutcome.STORED] * 2
    [(job2, state2, run2)] = queue(sessions, t0 + 50)
    assert (state2, run2) == (JobState.QUEUED, 2) and job2 != job_id
    with sessions() as s:
        job = s.get(Job, job2)
        assert job.instance_count == 7
        events = [e.event for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert events.count("job_created") == 2


def test_resend_during_receiving_makes_one_job(sessions):
    receive(sessions, "1.8", 4, 1000.0)
    receive(sessions, "1.8", 4, 1001.0)  # whole study again while still receiving
    assert len(queue(sessions, 1010.0)) == 1


def test_non_ct_study_is_rejected_by_routing_with_reason(sessions):
    receive(sessions, "1.7", 5, 1000.0, modality="MR")
    [(job_id, state, _)] = queue(sessions, 1010.0)
    assert state == JobState.REJECTED
    with sessions() as s:
        job = s.get(Job, job_id)
        assert "modality MR not in ['CT']" in job.error_message
    with sessions.begin() as s:
        assert claim_jobs(s, "w", 60, 3) == []


def test_too_few_slices_is_rejected(sessions):
    receive(sessions, "1.6", 2, 1000.0)
    [(_, state, _)] = queue(sessions, 1010.0)
    assert state == JobState.REJECTED


def test_result_objects_routed_back_never_queue_a_run(sessions):
    receive(sessions, "1.5", 3, 1000.0)
    [(job_id, _, _)] = queue(sessions, 1010.0)
    with sessions.begin() as s:
        job = s.get(Job, job_id)
        echoed = instance("1.5", job.sr_sop_instance_uid, series=job.sr_series_uid, modality="SR")
        assert record_instance(s, echoed, "bb/x", 1, 1020.0) == InstanceOutcome.OWN_RESULT
    assert queue(sessions, 1030.0) == []


def test_claim_lease_expiry_and_bounded_attempts(sessions):
    receive(sessions, "1.4", 3, 1000.0)
    [(job_id, _, _)] = queue(sessions, 1010.0)
    with sessions.begin() as s:
        assert [j.id for j in claim_jobs(s, "w1", 60, 2, now=2000.0)] == [job_id]
    with sessions.begin() as s:
        assert claim_jobs(s, "w2", 60, 2, now=2030.0) == []  # lease held
        assert heartbeat(s, job_id, "w1", 60, now=2050.0)  # extended to 2110
    with sessions.begin() as s:
        assert claim_jobs(s, "w2", 60, 2, now=2100.0) == []
    with sessions.begin() as s:  # w1 died: the lease expires and w2 takes the job over
        assert [j.id for j in claim_jobs(s, "w2", 60, 2, now=2200.0)] == [job_id]
        assert not heartbeat(s, job_id, "w1", 60, now=2201.0)
    with sessions.begin() as s:  # w2 died too, on the last allowed attempt: FAILED, not claimed again
        assert claim_jobs(s, "w3", 60, 2, now=2400.0) == []
        job = s.get(Job, job_id)
        assert (job.state, job.error_code, job.attempts) == (JobState.FAILED, "LEASE_EXPIRED", 2)


def test_failed_attempt_retries_with_backoff_then_fails(sessions):
    receive(sessions, "1.3", 3, 1000.0)
    [(job_id, _, _)] = queue(sessions, 1010.0)
    policy = RetryPolicy(max_attempts=2, backoff_base_seconds=100, backoff_cap_seconds=100)
    with sessions.begin() as s:
        [job] = claim_jobs(s, "w", 60, 2, now=2000.0)
        release_for_retry(s, job, policy, "RuntimeError", "boom", now=2001.0)
    with sessions.begin() as s:
        assert claim_jobs(s, "w", 60, 2, now=2050.0) == []  # backing off
        [job] = claim_jobs(s, "w", 60, 2, now=2102.0)
        release_for_retry(s, job, policy, "RuntimeError", "boom again", now=2103.0)
    with sessions() as s:
        job = s.get(Job, job_id)
        assert (job.state, job.error_message, job.attempts) == (JobState.FAILED, "boom again", 2)


def test_two_workers_never_claim_the_same_job(sessions):
    for n in range(12):
        receive(sessions, f"2.{n}", 3, 1000.0)
    assert len(queue(sessions, 1010.0)) == 12
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        barrier.wait()
        while True:
            with sessions.begin() as s:
                jobs = claim_jobs(s, name, 600, 3, limit=2)
                ids = [j.id for j in jobs]
            if not ids:
                return
            claimed[name].extend(ids)
            time.sleep(0.001)

    threads = [threading.Thread(target=work, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not set(claimed["a"]) & set(claimed["b"])
    assert len(claimed["a"]) + len(claimed["b"]) == 12


def test_outbox_retries_with_backoff_and_records_success(sessions, tmp_path):
    from ichvol.config import Destination

    receive(sessions, "1.2", 3, 1000.0)
    [(job_id, _, _)] = queue(sessions, 1010.0)
    policy = RetryPolicy(max_attempts=3, backoff_base_seconds=10, backoff_cap_seconds=15)
    with sessions.begin() as s:
        job = s.get(Job, job_id)
        add_sends(s, job, [Destination("A", "h", 1), Destination("B", "h", 2)],
                  [("SR", job.sr_sop_instance_uid, tmp_path / "sr.dcm")], now=2000.0)
    with sessions.begin() as s:
        sends = claim_sends(s, "w", 60, now=2000.0)
        assert len(sends) == 2
        record_send_result(s, sends[0], 0x0000, None, policy, now=2001.0)
        record_send_result(s, sends[1], 0xA700, "destination answered status 0xA700", policy, now=2001.0)
    with sessions.begin() as s:
        assert claim_sends(s, "w", 60, now=2005.0) == []  # backing off 10 s
        [retry] = claim_sends(s, "w", 60, now=2012.0)
        record_send_result(s, retry, None, "association rejected", policy, now=2012.0)
    with sessions.begin() as s:
        assert claim_sends(s, "w", 60, now=2020.0) == []  # second backoff is 15 s (capped)
        [retry] = claim_sends(s, "w", 60, now=2028.0)
        record_send_result(s, retry, None, "association rejected", policy, now=2028.0)
    with sessions() as s:
        states = {x.destination: (x.state, x.attempts, x.last_status) for x in s.scalars(select(Send))}
        assert states == {"A@h:1": (SendState.SENT, 1, 0), "B@h:2": (SendState.FAILED, 3, None)}
        assert s.get(Job, job_id).sent_at is None  # not every send succeeded
        events = [e.event for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert events.count("result_sent") == 1 and events.count("send_retry") == 2 and "send_failed" in events


def test_audit_is_append_only_in_the_database(sessions):
    receive(sessions, "1.1", 1, 1000.0)
    with sessions.begin() as s:
        from ichvol.db import audit

        audit.record(s, "test_event", "1.1", a=1)
    for statement in ("UPDATE audit SET event = 'x'", "DELETE FROM audit"):
        with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as s:
            s.execute(text(statement))
    with sessions() as s:
        assert s.scalar(select(AuditEvent.event).where(AuditEvent.event == "test_event")) == "test_event"


def test_resubmit_by_study_or_job_id(sessions):
    receive(sessions, "1.0", 3, 1000.0)
    [(job_id, _, _)] = queue(sessions, 1010.0)
    with sessions.begin() as s:
        first = s.get(Job, job_id)
        again = resubmit(s, "1.0")
        assert (again.run_number, again.state) == (2, JobState.QUEUED)
        assert again.sr_sop_instance_uid != first.sr_sop_instance_uid
        assert resubmit(s, str(job_id)).run_number == 3
        with pytest.raises(InputError, match="no study"):
            resubmit(s, "9.9.9")


def test_shutdown_hands_back_leases_at_once(sessions):
    from ichvol.db.queue import release_leases

    receive(sessions, "1.01", 3, 1000.0)
    [(job_id, _, _)] = queue(sessions, 1010.0)
    with sessions.begin() as s:
        claim_jobs(s, "leaving", 600, 3, now=2000.0)
    with sessions.begin() as s:
        assert release_leases(s, "leaving", now=2001.0) == 1
    with sessions.begin() as s:  # claimable now, not after the 600 s lease; the attempt stays counted
        [job] = claim_jobs(s, "next", 600, 3, now=2002.0)
        assert (job.id, job.attempts) == (job_id, 2)
