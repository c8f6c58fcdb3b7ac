"""Faults with real processes and peers: `ichvol listen|work|serve` as subprocesses killed with SIGKILL,
a destination that is down, garbage on the DICOM port, DICOM TLS. DCMTK storescu sends, DCMTK storescp
receives. A tiny untrained model keeps the worker's cascade fast: these tests are about not losing or
duplicating anything, not about the segmentation."""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import time
from pathlib import Path

import pydicom
import pytest
import service_support
from peers import (
    IchvolService,
    Peer,
    ServiceDatabase,
    StoreSCP,
    echoscu,
    fast_service_sections,
    free_port,
    ichvol_config,
    ichvol_report,
    make_tiny_model,
    require,
    storescu,
    wait_until,
    write_ct_series,
    write_service_config,
)

pytestmark = pytest.mark.slow
db_url = service_support.db_url  # E's fixture: a fresh SQLite file, and a PostgreSQL schema when configured
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.fixture(scope="module", autouse=True)
def _dcmtk():
    require("storescu")
    require("storescp")


@pytest.fixture
def started():
    """Peers a test starts outside a `with` block (to kill them itself); stopped at teardown in any case."""
    peers: list[Peer] = []
    yield peers
    for peer in peers:
        peer.stop()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One small CT study shared by the tests (each test has its own service and data folder)."""
    files = write_ct_series(tmp_path_factory.mktemp("study"), slices=12, size=64)
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    return files, datasets[0].StudyInstanceUID, {ds.SOPInstanceUID for ds in datasets}


def _config(tmp_path: Path, destination_port: int, model: Path | None = None, stable_seconds: float = 1,
            lease_seconds: float = 30, **extra) -> tuple[Path, int, str]:
    listen_port = free_port()
    config = ichvol_config(tmp_path / "var", listen_port, [("PACS", "127.0.0.1", destination_port)],
                           stable_seconds=stable_seconds,
                           **fast_service_sections(model, lease_seconds=lease_seconds))
    for name, settings in extra.items():
        config[name] = {**config.get(name, {}), **settings}
    path = write_service_config(tmp_path / "ichvol.toml", config)
    return path, listen_port, config["database"]["url"]


def _sent_objects(pacs: StoreSCP) -> list[tuple[str, str]]:
    return sorted((ds.Modality, ds.SOPInstanceUID) for ds in pacs.received())


def _assert_results_sent_once(pacs: StoreSCP, job: dict) -> None:
    """Every object of the job arrived exactly once, with the SOP Instance UIDs minted for the job."""
    expected = [(s["object"], s["sop_instance_uid"]) for s in job["sends"]]
    assert sorted(expected) == _sent_objects(pacs)
    assert job["uids"]["sr_sop_instance"] in {uid for _, uid in expected}
    assert all(s["state"] == "SENT" for s in job["sends"]), job["sends"]


def test_listener_killed_right_after_acknowledging_loses_nothing(tmp_path, study, tiny_model, started):
    files, study_uid, sop_uids = study
    with StoreSCP(tmp_path / "pacs") as pacs:
        config, port, url = _config(tmp_path, pacs.port, tiny_model, stable_seconds=3)
        db = ServiceDatabase(url)
        worker = IchvolService(tmp_path, config, "work")  # keeps running: only the listener is killed
        listener = IchvolService(tmp_path, config, "listen", listen_port=port)
        started.extend([worker.start(), listener.start()])
        sent = storescu(port, files)
        assert sent.returncode == 0, sent.stderr  # every instance acknowledged (status 0x0000)
        listener.kill(signal.SIGKILL)  # before the study is stable: nothing queued yet
        assert db.jobs(study_uid) == []

        # What was acknowledged is on disk and in the database, in files the listener named.
        spool = tmp_path / "var" / "spool"
        rows = db.instances(study_uid)
        assert {row.sop_instance_uid for row in rows} == sop_uids
        for row in rows:
            assert pydicom.dcmread(spool / row.spool_path, stop_before_pixels=True).SOPInstanceUID == \
                row.sop_instance_uid

        with IchvolService(tmp_path, config, "listen", listen_port=port, name="ichvol-listen-restarted") as again:
            pacs.wait_for_modalities(["SR"], 90, peers=[again, worker])
            wait_until(lambda: all(j.state == "DONE" and j.sent_at for j in db.jobs(study_uid)), 30,
                       "the job to be DONE and sent", peers=[again, worker])
            time.sleep(4)  # longer than stable_seconds: nothing new arrived, so still one run
            assert len(db.jobs(study_uid)) == 1
        (report,) = ichvol_report(config, study_uid)
        db.close()
    assert report["instances"] == len(files)
    assert len(report["jobs"]) == 1 and report["jobs"][0]["state"] == "DONE"
    assert report["jobs"][0]["instances"] == len(files)
    _assert_results_sent_once(pacs, report["jobs"][0])


def _acknowledged(storescu_log: str) -> list[str]:
    """Files that DCMTK storescu -v reports as stored with status Success, in order."""
    acknowledged, current = [], None
    for line in storescu_log.splitlines():
        if line.startswith("I: Sending file: "):
            current = line.removeprefix("I: Sending file: ").strip()
        elif "Received Store Response (Success)" in line and current is not None:
            acknowledged.append(current)
            current = None
    return acknowledged


def test_listener_killed_mid_association_keeps_every_acknowledged_instance(tmp_path, started):
    """SIGKILL while a study is streaming in: what was acknowledged survives, the instance in flight leaves
    no partial file or row, and the sender's retry completes the study without duplicates."""
    files = write_ct_series(tmp_path / "big", slices=100, size=64)
    uid_of = {str(f): pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    config, port, url = _config(tmp_path, free_port(), stable_seconds=60)
    db = ServiceDatabase(url)
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    listener = IchvolService(tmp_path, config, "listen", listen_port=port)
    started.append(listener.start())
    sender = Peer("storescu", [require("storescu"), "-v", "-aet", "PACS", "-aec", "ICHVOL", "127.0.0.1", port,
                               *files], tmp_path / "storescu.log")
    started.append(sender.start())
    wait_until(lambda: len(db.instances(study_uid)) >= 20, 60, "20 stored instances", interval=0.02,
               peers=[listener])
    listener.kill(signal.SIGKILL)
    sender.process.wait(timeout=60)
    acknowledged = {uid_of[f] for f in _acknowledged(sender.log_text())}
    # storescu sends one instance at a time: with 20 rows committed, the 19 before the last were acknowledged;
    # the kill may land between the 20th's commit and its response (stored, not acknowledged: sent again).
    assert sender.returncode != 0 and 19 <= len(acknowledged) < len(files), \
        f"not killed mid-association ({len(acknowledged)} of {len(files)} acknowledged)"

    with IchvolService(tmp_path, config, "listen", listen_port=port, name="ichvol-listen-restarted"):
        rows = db.instances(study_uid)
        stored = {row.sop_instance_uid for row in rows}
        assert acknowledged <= stored  # nothing acknowledged was lost
        spool = tmp_path / "var" / "spool"
        on_disk = {p.relative_to(spool).as_posix() for p in spool.rglob("*") if p.is_file()}
        referenced = {row.spool_path for row in rows}
        assert referenced <= on_disk  # every recorded instance has its file
        assert not any(name.endswith(".part") for name in on_disk), "partial spool files left behind"
        # A kill between the spool rename and the database commit leaves the instance in flight as a complete
        # file nothing refers to (never acknowledged: the sender sends it again); the restart removes it.
        assert on_disk == referenced, sorted(on_disk - referenced)
        resent = storescu(port, files)  # the sender retries the whole study
        assert resent.returncode == 0, resent.stderr
        rows = db.instances(study_uid)
    db.close()
    assert sorted(row.sop_instance_uid for row in rows) == sorted(uid_of.values())  # each once


def test_worker_killed_mid_job_is_recovered_and_results_sent_once(tmp_path, study, tiny_model, db_url, started):
    """Separate `listen` and two `work` processes sharing the queue (SQLite; also PostgreSQL when
    ICHVOL_TEST_DATABASE_URL is set), as in deploy/systemd and deploy/compose.yaml. The worker that claims
    the job is killed mid-job; the other one takes it over once the lease has expired."""
    files, study_uid, _ = study
    with StoreSCP(tmp_path / "pacs") as pacs:
        config, port, url = _config(tmp_path, pacs.port, tiny_model, lease_seconds=3, database={"url": db_url})
        db = ServiceDatabase(url)
        with IchvolService(tmp_path, config, "listen", listen_port=port) as listener:
            workers = [IchvolService(tmp_path, config, "work", name=f"ichvol-work-{i}") for i in (1, 2)]
            for worker in workers:
                started.append(worker.start())
            for worker in workers:
                wait_until(lambda w=worker: "polling for jobs" in w.log_text(), 90, f"{worker.name} to start",
                           peers=[worker])
            assert storescu(port, files).returncode == 0
            (running,) = wait_until(lambda: [j for j in db.jobs(study_uid) if j.state == "RUNNING"], 60,
                                    "a worker to claim the job", interval=0.05, peers=[listener, *workers])
            owner_pid = int(running.lease_owner.rsplit(":", 2)[1])  # worker ids are host:pid:random
            (victim,) = [w for w in workers if w.process.pid == owner_pid]
            (survivor,) = [w for w in workers if w is not victim]
            victim.kill(signal.SIGKILL)
            (job,) = db.jobs(study_uid)
            assert job.state == "RUNNING" and job.sends == [] and job.attempts == 1, "not killed mid-job"
            assert job.lease_owner == running.lease_owner

            pacs.wait_for_modalities(["SR"], 120, peers=[listener, survivor])
            wait_until(lambda: db.jobs(study_uid)[0].sent_at, 30, "all sends done", peers=[survivor])
        (report,) = ichvol_report(config, study_uid)
        db.close()
    (job,) = report["jobs"]
    assert job["state"] == "DONE" and job["attempts"] == 2
    starts = [e["details"]["worker"] for e in report["audit"] if e["event"] == "job_started"]
    assert starts[0] == running.lease_owner and len(starts) == 2 and f":{survivor.process.pid}:" in starts[1]
    _assert_results_sent_once(pacs, job)


def test_destination_down_for_a_while_gets_results_when_it_returns(tmp_path, study, tiny_model):
    files, study_uid, _ = study
    pacs_port = free_port()  # nothing listens there yet
    config, port, url = _config(tmp_path, pacs_port, tiny_model)
    db = ServiceDatabase(url)
    with IchvolService(tmp_path, config, "serve", listen_port=port) as serve:
        assert storescu(port, files).returncode == 0

        def failed_twice() -> bool:
            jobs = db.jobs(study_uid)
            return bool(jobs) and bool(jobs[0].sends) and all(
                s.attempts >= 2 and s.state != "SENT" and s.last_error for s in jobs[0].sends)

        wait_until(failed_twice, 120, "two failed send attempts", peers=[serve])
        (job,) = db.jobs(study_uid)
        assert job.state == "DONE" and job.sent_at is None
        with StoreSCP(tmp_path / "pacs", port=pacs_port) as pacs:
            pacs.wait_for_modalities(["SR"], 30, peers=[serve])
            wait_until(lambda: db.jobs(study_uid)[0].sent_at, 30, "all sends done", peers=[serve])
            (report,) = ichvol_report(config, study_uid)
    db.close()
    (job,) = report["jobs"]
    _assert_results_sent_once(pacs, job)
    assert all(s["attempts"] >= 3 for s in job["sends"])
    assert job["timings"]["inference_seconds"] is not None
    assert len([e for e in report["audit"] if e["event"] == "job_started"]) == 1  # the model ran once
    assert any(e["event"] == "send_retry" for e in report["audit"])


GARBAGE_TIMEOUTS = {"acse_timeout": 2, "network_timeout": 3, "dimse_timeout": 3}


@pytest.fixture(scope="module")
def listener(tmp_path_factory):
    """A bare `ichvol listen` (no worker, no model) with short timeouts, for the protocol-level tests."""
    tmp_path = tmp_path_factory.mktemp("listener")
    config, port, url = _config(tmp_path, free_port(), stable_seconds=60, listener=GARBAGE_TIMEOUTS)
    with IchvolService(tmp_path, config, "listen", listen_port=port) as service:
        yield service, port, url


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, bool]:
    """What the listener sends back, and whether it closed the connection within `limit` seconds."""
    answer = b""
    deadline = time.monotonic() + limit
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        except ConnectionResetError:
            return answer, True
        if not chunk:
            return answer, True
        answer += chunk
    return answer, False


def _is_abort_pdus(data: bytes) -> bool:
    """Only A-ABORT PDUs (type 0x07, length 4)."""
    return all(data[i] == 0x07 and data[i + 2:i + 6] == b"\x00\x00\x00\x04" for i in range(0, len(data), 10)) \
        and len(data) % 10 == 0


@pytest.mark.parametrize("payload", [
    random.Random(4).randbytes(2048),  # random bytes: not a PDU
    b"\x01\x00\xff\xff\xff\xff" + bytes(64),  # an A-ASSOCIATE-RQ header declaring a 4 GiB PDU
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n",
], ids=["random-bytes", "huge-pdu-length", "http-request"])
def test_garbage_on_the_dicom_port_is_aborted_and_the_next_association_works(listener, payload, study):
    service, port, url = listener
    files, study_uid, _ = study
    with socket.create_connection(("127.0.0.1", port), timeout=10) as garbage:
        garbage.sendall(payload)
        # While the garbage connection is still open, a real sender is served.
        assert echoscu(port).returncode == 0
        assert storescu(port, files[:2]).returncode == 0
        # The listener ends the garbage connection (A-ABORT and/or close) within its timeouts.
        answer, closed = _read_until_closed(garbage, GARBAGE_TIMEOUTS["network_timeout"] + 7)
    assert answer == b"" or _is_abort_pdus(answer), answer[:40]
    assert closed, f"the listener kept the garbage connection open (answered {answer[:20]!r})"
    assert service.running
    assert echoscu(port).returncode == 0
    db = ServiceDatabase(url)
    assert len(db.instances(study_uid)) == 2  # only what storescu sent, nothing from the garbage
    db.close()


def test_pdu_longer_than_the_limit_is_refused_before_it_is_read(listener):
    """A peer may announce any PDU length (up to 4 GiB); the listener must not buffer more than its PDU size
    limit (listener.max_pdu_size, plus room for an association request) from it."""
    service, port, _ = listener
    streamed = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as hostile:
        hostile.sendall(b"\x04\x00\xff\xff\xff\xf0")  # a P-DATA-TF header announcing ~4 GiB
        chunk = bytes(1 << 20)
        with contextlib.suppress(ConnectionError, TimeoutError):
            while streamed < 64 << 20:
                hostile.sendall(chunk)
                streamed += len(chunk)
    assert streamed < 16 << 20, f"the listener read {streamed >> 20} MiB of one PDU"
    assert service.running
    assert echoscu(port).returncode == 0


def test_tls_listener_accepts_a_tls_client_and_refuses_a_plain_one(tmp_path, tls_certs, study):
    files, study_uid, sop_uids = study
    tls = {"certificate": str(tls_certs / "server.crt"), "key": str(tls_certs / "server.key"),
           "ca": str(tls_certs / "ca.crt"), "require_client_certificate": True}
    config, port, url = _config(tmp_path, free_port(), stable_seconds=60, tls=tls)
    client = ["+tls", tls_certs / "client.key", tls_certs / "client.crt", "+cf", tls_certs / "ca.crt"]
    with IchvolService(tmp_path, config, "listen", listen_port=port) as service:
        assert echoscu(port, extra=client).returncode == 0
        plain = echoscu(port)
        assert plain.returncode != 0
        anonymous = echoscu(port, extra=["+tla", "+cf", tls_certs / "ca.crt"])  # TLS, no client certificate
        assert anonymous.returncode != 0
        sent = storescu(port, files, extra=client)
        assert sent.returncode == 0, sent.stderr
        assert service.running
    db = ServiceDatabase(url)
    assert {row.sop_instance_uid for row in db.instances(study_uid)} == sop_uids
    db.close()
