"""The worker on studies it must not process: REJECTED with the series selection's reasons, nothing sent.
(The full pipeline with the shipped model is exercised by tests/test_service_e2e.py.)"""

from __future__ import annotations

import pydicom
import pytest
from peers import write_ct_series
from service_support import make_config, sessions_for
from sqlalchemy import select

from ichvol.db.models import AuditEvent, Job, JobState, Send
from ichvol.db.queue import record_instance
from ichvol.listener.spool import Spool
from ichvol.listener.store import describe
from ichvol.service.watcher import queue_stable
from ichvol.service.worker import Worker


def spool_study(config, sessions, files) -> None:
    spool = Spool(config.spool_dir)
    with sessions.begin() as s:
        for path in files:
            relative, size = spool.write(path.read_bytes())
            record_instance(s, describe(pydicom.dcmread(path)), relative, size, 0.0)


LOCALIZER = {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}
SAGITTAL = {"ImageOrientationPatient": [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]}


@pytest.mark.parametrize(("change", "reason"), [(LOCALIZER, "localizer"), (SAGITTAL, "slice")],
                         ids=["localizer-only", "sagittal-only"])
def test_study_without_usable_series_is_rejected_with_reason(tmp_path, change, reason):
    # Routing lets the study through; the series selection then finds nothing it can segment.
    config = make_config(tmp_path, ROUTING__MIN_SLICES="3", DESTINATIONS='[{ae_title="P", host="127.0.0.1", port=9}]')
    sessions = sessions_for(config)
    files = write_ct_series(tmp_path / "study", slices=3, size=16)
    for path in files:
        ds = pydicom.dcmread(path)
        for keyword, value in change.items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
    spool_study(config, sessions, files)
    [job] = queue_stable(config, sessions)
    assert job.state == JobState.QUEUED
    worker = Worker(config, sessions, segmenter=None)  # never reached: nothing to segment
    assert worker.process_available()
    with sessions() as s:
        job = s.get(Job, job.id)
        assert job.state == JobState.REJECTED
        assert job.error_code in ("NO_SUITABLE_SERIES", "GeometryError")
        assert reason in job.error_message.lower(), job.error_message
        assert s.scalars(select(Send)).all() == []
        assert s.scalar(select(AuditEvent.details).where(AuditEvent.event == "job_rejected"))["job_id"] == job.id
    assert not (config.work_dir / str(job.id)).exists()
    assert not worker.process_available()


def test_a_ct_without_a_cranial_cavity_is_rejected_by_the_model_and_nothing_is_sent(tmp_path):
    from model_phantoms import write_untrained_model

    from ichvol.models.predictor import CascadePredictor

    config = make_config(tmp_path, ROUTING__MIN_SLICES="3", DESTINATIONS='[{ae_title="P", host="127.0.0.1", port=9}]')
    sessions = sessions_for(config)
    spool_study(config, sessions, write_ct_series(tmp_path / "study", slices=4, size=32, skull=False))
    [job] = queue_stable(config, sessions)
    predictor = CascadePredictor.from_folder(write_untrained_model(tmp_path / "model"), device="cpu")
    assert Worker(config, sessions, segmenter=predictor).process_available()
    with sessions() as s:
        job = s.get(Job, job.id)
        assert (job.state, job.error_code) == (JobState.REJECTED, "NotAHeadCTError")
        assert "no cranial cavity" in job.error_message
        assert s.scalars(select(Send)).all() == []
    assert not any((config.results_dir / str(job.id)).glob("*.dcm"))
