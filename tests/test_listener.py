"""The DICOM listener against real DCMTK senders: durability, allow-list, bad input, duplicates, statuses."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pydicom
import pytest
from peers import echoscu, require, storescu, write_ct_series
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from service_support import db_url, make_config, sessions_for  # noqa: F401 - db_url is a fixture
from sqlalchemy import select, text

from ichvol.db.models import AuditEvent, Instance, Study
from ichvol.listener.server import Listener
from ichvol.service.watcher import queue_stable


@pytest.fixture
def running(tmp_path, db_url):  # noqa: F811
    """A listener on a free port, allow-list ["PACS"], on each test database."""
    require("storescu")
    config = make_config(tmp_path, db_url, LISTENER__ALLOWED_CALLING_AETS='["PACS"]', LISTENER__STABLE_SECONDS="0.5")
    sessions = sessions_for(config)
    listener = Listener(config, sessions)
    _, port = listener.start()
    yield config, sessions, listener, port
    listener.stop()
    sessions.kw["bind"].dispose()


def events(sessions, name: str, expect: int | None = None) -> list[AuditEvent]:
    """The audit events called `name`; with `expect`, wait (briefly) until that many are there: association
    events are written by the listener's threads, possibly just after the peer has gone."""
    deadline = time.monotonic() + 10
    while True:
        with sessions() as s:
            found = list(s.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)))
        if expect is None or len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def spool_files(config) -> list[Path]:
    return sorted(p for p in config.spool_dir.rglob("*") if p.is_file())


def test_echo_and_store_a_study_durably(running, tmp_path):
    config, sessions, _, port = running
    assert echoscu(port).returncode == 0
    files = write_ct_series(tmp_path / "study", slices=5)
    result = storescu(port, files)
    assert result.returncode == 0, result.stderr
    study_uid = pydicom.dcmread(files[0]).StudyInstanceUID
    with sessions() as s:
        rows = list(s.scalars(select(Instance)))
        assert len(rows) == 5
        assert s.scalar(select(Study.patient_id)) == "PEERS-TEST"
    stored = spool_files(config)
    assert len(stored) == 5 and not list((config.spool_dir / "tmp").iterdir())
    # Names are ours (uuid), not from the data; the bytes are what was sent.
    sent = {pydicom.dcmread(f).SOPInstanceUID for f in files}
    assert {pydicom.dcmread(p).SOPInstanceUID for p in stored} == sent
    assert all(len(p.stem) == 32 for p in stored)
    [received] = events(sessions, "instances_received", expect=1)
    assert received.study_uid == study_uid and received.details["calling_ae"] == "PACS"
    assert list(received.details["series"].values()) == [{"stored": 5}]
    assert len(events(sessions, "association_accepted", expect=2)) == 2  # echo + store


def test_unknown_calling_ae_is_rejected_and_audited(running):
    _, sessions, _, port = running
    result = echoscu(port, calling_aet="INTRUDER")
    assert result.returncode != 0
    [rejected] = events(sessions, "association_rejected", expect=1)
    assert rejected.details["calling_ae"] == "INTRUDER"
    assert rejected.details["address"].startswith("127.0.0.1:")


def test_resent_study_is_stored_once_and_queued_once(running, tmp_path):
    config, sessions, _, port = running
    files = write_ct_series(tmp_path / "study", slices=12)
    assert storescu(port, files).returncode == 0
    assert storescu(port, files).returncode == 0  # the whole study again
    assert len(spool_files(config)) == 12
    time.sleep(0.6)
    jobs = queue_stable(config, sessions)
    assert len(jobs) == 1 and jobs[0].instance_count == 12
    assert queue_stable(config, sessions) == []
    outcomes = [e.details["series"] for e in events(sessions, "instances_received", expect=2)]
    assert [list(o.values())[0] for o in outcomes] == [{"stored": 12}, {"duplicate": 12}]


def test_path_traversal_uids_stay_inside_the_spool(running, tmp_path):
    config, sessions, _, port = running
    [path] = write_ct_series(tmp_path / "evil", slices=1)
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = ds.SeriesInstanceUID = "../../x"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "../../../../tmp/x"
    ds.save_as(path, enforce_file_format=True)
    before = {p for p in tmp_path.rglob("*")}
    result = storescu(port, [path])
    assert result.returncode == 0, result.stderr
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(config.spool_dir.resolve() in p.resolve().parents or p.suffix in (".db-wal", ".db-shm")
                       for p in new)
    assert not any(".." in p.name or p.name == "x" for p in new)
    with sessions() as s:
        assert s.scalar(select(Instance.sop_instance_uid)) == "../../../../tmp/x"


@pytest.mark.parametrize("payload", [
    bytes(range(256)) * 8,  # not PDUs
    b"\x01\x00\xff\xff\xff\xff" + bytes(64),  # an A-ASSOCIATE-RQ announcing 4 GiB, then silence
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["bytes", "huge-pdu", "http"])
def test_garbage_on_the_port_is_cut_off_and_the_next_association_works(tmp_path, payload):
    require("echoscu")
    config = make_config(tmp_path, LISTENER__NETWORK_TIMEOUT="2", LISTENER__ACSE_TIMEOUT="2")
    listener = Listener(config, sessions_for(config))
    _, port = listener.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(payload)
            assert echoscu(port).returncode == 0  # served while the garbage connection is open
            started, answer = time.monotonic(), b""
            sock.settimeout(8)
            try:
                while chunk := sock.recv(4096):
                    answer += chunk
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < 8  # closed by the listener, not by our timeout
        assert all(answer[i] == 0x07 for i in range(0, len(answer), 10))  # nothing but A-ABORTs
        assert echoscu(port).returncode == 0
        assert spool_files(config) == []
    finally:
        listener.stop()


def _send(port: int, dataset: pydicom.Dataset) -> int:
    ae = AE(ae_title="PACS")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="ICHVOL")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(dataset).Status)
    finally:
        assoc.release()


def test_missing_uids_get_cannot_understand(running, tmp_path):
    config, sessions, _, port = running
    [path] = write_ct_series(tmp_path / "s", slices=1)
    ds = pydicom.dcmread(path)
    del ds.StudyInstanceUID
    assert _send(port, ds) == 0xC000
    assert spool_files(config) == []


def test_free_space_reserve_answers_out_of_resources(tmp_path):
    config = make_config(tmp_path, LISTENER__MIN_FREE_MB=str(2**40))  # more than any disk has
    sessions = sessions_for(config)
    listener = Listener(config, sessions)
    _, port = listener.start()
    try:
        [path] = write_ct_series(tmp_path / "s", slices=1)
        assert _send(port, pydicom.dcmread(path)) == 0xA700
        assert spool_files(config) == []
    finally:
        listener.stop()


def test_database_failure_answers_out_of_resources_and_leaves_no_file(running, tmp_path):
    config, sessions, _, port = running
    with sessions.begin() as s:
        s.execute(text("DROP TABLE instances"))
    [path] = write_ct_series(tmp_path / "s", slices=1)
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = generate_uid()
    assert _send(port, ds) == 0xA700
    assert spool_files(config) == []
