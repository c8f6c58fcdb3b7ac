"""The outbox sender against DCMTK storescp as the PACS: success, refusal, abort, a destination that is down,
and delivery once it is back, always with the SOP Instance UIDs minted with the job. The objects sent are
real SEG + SR written by ichvol's writer for a small CT series; the model is not involved."""

from __future__ import annotations

import time

import numpy as np
import pytest
from peers import StoreSCP, free_port, require, write_ct_series
from service_support import make_config, sessions_for
from sqlalchemy import select

from ichvol.db.models import AuditEvent, Job, Send, SendState
from ichvol.db.queue import ReceivedInstance, add_sends, queue_stable_studies, record_instance, result_uids
from ichvol.service.sender import Sender

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def outbox(tmp_path):
    """A job whose SEG + SR (written with the job's minted UIDs) wait in the outbox for one destination."""
    require("storescp")
    from ichvol.dicom import load_ct_image
    from ichvol.encode import write_results
    from ichvol.results import AlgorithmInfo

    port = free_port()
    config = make_config(
        tmp_path, DESTINATIONS=f'[{{ae_title = "PACS", host = "127.0.0.1", port = {port}}}]',
        SEND_RETRY__MAX_ATTEMPTS="3", SEND_RETRY__BACKOFF_BASE_SECONDS="0", SEND_RETRY__BACKOFF_CAP_SECONDS="0",
        LISTENER__ACSE_TIMEOUT="5", LISTENER__DIMSE_TIMEOUT="5", LISTENER__NETWORK_TIMEOUT="5",
    )
    sessions = sessions_for(config)
    with sessions.begin() as s:
        record_instance(s, ReceivedInstance("1.2.826.0.1.3680043.10.1", "1.2.3", "1.2.3.4", CT, "CT", None, None,
                                            None, None), "aa/x.dcm", 1, 0.0)
        [job] = queue_stable_studies(s, 0, config.routing.__class__(min_slices=1), 10.0)
        uids = result_uids(job)
        job_id = job.id
    write_ct_series(tmp_path / "ct", slices=4, size=16)
    image, _ = load_ct_image(tmp_path / "ct", min_slices=1)
    labels = np.zeros(image.hu.shape, np.uint8)
    labels[1:3, 4:9, 4:9] = 1
    files = write_results(image, labels, tmp_path / "results", uids, AlgorithmInfo())
    with sessions.begin() as s:
        add_sends(s, s.get(Job, job_id), config.destinations,
                  [("SEG", uids.seg_sop_instance_uid, files.seg_path), ("SR", uids.sr_sop_instance_uid, files.sr_path)],
                  now=10.0)
    yield config, sessions, port, uids, job_id
    sessions.kw["bind"].dispose()


def send_states(sessions) -> list[tuple[str, str, int, str | None]]:
    with sessions() as s:
        return [(x.object_kind, x.state, x.attempts, x.last_error) for x in s.scalars(select(Send).order_by(Send.id))]


def test_results_delivered_with_minted_uids(outbox, tmp_path):
    config, sessions, port, uids, job_id = outbox
    with StoreSCP(tmp_path / "pacs", port=port) as pacs:
        assert Sender(config, sessions).send_due()
        received = pacs.received()
    assert {ds.SOPInstanceUID for ds in received} == {uids.seg_sop_instance_uid, uids.sr_sop_instance_uid}
    assert {ds.Modality for ds in received} == {"SEG", "SR"}
    assert [(k, s, n) for k, s, n, _ in send_states(sessions)] == [("SEG", "SENT", 1), ("SR", "SENT", 1)]
    with sessions() as s:
        assert s.get(Job, job_id).sent_at is not None
        sent = [e.details for e in s.scalars(select(AuditEvent).where(AuditEvent.event == "result_sent"))]
    assert [(d["destination"], d["status"]) for d in sent] == [(f"PACS@127.0.0.1:{port}", "0x0000")] * 2
    assert not Sender(config, sessions).send_due()  # nothing left to send


@pytest.mark.parametrize(("fault", "error"), [
    # storescp --refuse answers A-ASSOCIATE-RJ and closes at once; the close may be seen first (an abort).
    (["--refuse"], ("association rejected", "association aborted")),
    (["--abort-after"], ("no response",)),
])
def test_refused_or_aborted_send_is_retried_then_delivered(outbox, tmp_path, fault, error):
    config, sessions, port, uids, _ = outbox
    with StoreSCP(tmp_path / "faulty", port=port, options=fault):
        Sender(config, sessions).send_due()
    states = send_states(sessions)
    assert states[0][1] == SendState.PENDING and states[0][2] == 1
    assert any(text in states[0][3] for text in error), states[0][3]
    with StoreSCP(tmp_path / "pacs", port=port) as pacs:
        Sender(config, sessions).send_due()
        received = pacs.received()
    assert [(k, s) for k, s, _, _ in send_states(sessions)] == [("SEG", "SENT"), ("SR", "SENT")]
    # A retry sends the very same objects: the UIDs minted with the job.
    assert {ds.SOPInstanceUID for ds in received} == {uids.seg_sop_instance_uid, uids.sr_sop_instance_uid}


def test_destination_down_fails_after_max_attempts(outbox):
    config, sessions, *_ = outbox
    for _ in range(3):
        Sender(config, sessions).send_due()
    assert [(s, n) for _, s, n, _ in send_states(sessions)] == [("FAILED", 3), ("FAILED", 3)]
    assert not Sender(config, sessions).send_due()
    with sessions() as s:
        failed = list(s.scalars(select(AuditEvent).where(AuditEvent.event == "send_failed")))
    assert len(failed) == 2
    assert all(f"PACS@127.0.0.1:{outbox[2]}" in event.details["error"] for event in failed)
    # `ichvol report --since ... --status failed` lists the job: its results never arrived.
    from ichvol.service.report import recent_jobs

    with sessions.begin() as s:
        assert [row["job_id"] for row in recent_jobs(s, time.time(), "failed")] == [outbox[4]]
        assert recent_jobs(s, time.time(), "rejected") == []
