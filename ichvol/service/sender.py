"""The outbox sender: C-STOREs result objects to their destinations, retrying with capped exponential backoff.

It never runs the model: a send row points at a file written once, whose SOP Instance UID was minted with
the job, so every try (and every destination) gets the same object.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import defaultdict
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy.orm import Session, sessionmaker

from ..config import Config
from ..db.models import Send
from ..db.queue import claim_sends, record_send_result
from .worker import worker_id

log = logging.getLogger(__name__)

# Statuses that mean the object was stored: success and the C-STORE warnings (coercion, elements discarded).
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}


def client_ssl_context(config: Config) -> ssl.SSLContext:
    tls = config.tls
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca) if tls.ca else None)
    context.check_hostname = False  # DICOM peers are known by AE title and address, rarely by DNS name
    if tls.enabled:
        context.load_cert_chain(str(tls.certificate), str(tls.key))
    return context


class Sender:
    def __init__(self, config: Config, sessions: sessionmaker[Session], owner: str | None = None):
        self.config = config
        self.sessions = sessions
        self.owner = owner or worker_id()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = self.send_due()
            except Exception:  # noqa: BLE001
                log.exception("sender pass failed")
                busy = False
            if not busy:
                stop.wait(self.config.worker.poll_seconds)

    def send_due(self) -> bool:
        """Send every due outbox row, one association per destination; False when none was due."""
        lease = self.config.listener.dimse_timeout * 4 + self.config.listener.acse_timeout
        with self.sessions.begin() as session:
            sends = claim_sends(session, self.owner, lease)
            batch = [(s.id, (s.ae_title, s.host, s.port, s.tls), Path(s.path)) for s in sends]
        by_destination: dict[tuple, list[tuple[int, Path]]] = defaultdict(list)
        for send_id, destination, path in batch:
            by_destination[destination].append((send_id, path))
        for destination, items in by_destination.items():
            outcomes = self._send(destination, [path for _, path in items])
            now = time.time()
            with self.sessions.begin() as session:
                for (send_id, _), (status, error) in zip(items, outcomes, strict=True):
                    send = session.get(Send, send_id)
                    if send.lease_owner != self.owner:
                        continue  # our lease expired and another sender took it over
                    record_send_result(session, send, status, error, self.config.send_retry, now)
                    level = logging.INFO if error is None else logging.WARNING
                    log.log(level, "send %d (%s to %s): %s", send_id, send.object_kind, send.destination,
                            "stored" if error is None else error)
        return bool(batch)

    def _send(self, destination: tuple, paths: list[Path]) -> list[tuple[int | None, str | None]]:
        """(status, error) per file; error None means stored."""
        ae_title, host, port, use_tls = destination
        datasets = []
        for path in paths:
            try:
                datasets.append(dcmread(path))
            except Exception as exc:  # noqa: BLE001 - a missing result file cannot be fixed by retrying soon
                datasets.append(None)
                log.error("cannot read result file %s: %s", path, exc)
        ae = AE(ae_title=self.config.worker.ae_title)
        ae.acse_timeout = self.config.listener.acse_timeout
        ae.dimse_timeout = self.config.listener.dimse_timeout
        ae.network_timeout = self.config.listener.network_timeout
        for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets if ds is not None}):
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        tls_args = (client_ssl_context(self.config), host) if use_tls else None
        try:
            assoc = ae.associate(host, port, ae_title=ae_title, tls_args=tls_args)
        except Exception as exc:  # noqa: BLE001 - e.g. a TLS handshake failure
            return [(None, f"cannot connect: {exc}")] * len(paths)
        if not assoc.is_established:
            why = "association rejected by" if assoc.is_rejected else "association aborted by" \
                if assoc.is_aborted else "cannot connect to"
            return [(None, f"{why} {ae_title}@{host}:{port}")] * len(paths)
        outcomes: list[tuple[int | None, str | None]] = []
        try:
            for path, ds in zip(paths, datasets, strict=True):
                if ds is None:
                    outcomes.append((None, f"result file unreadable: {path.name}"))
                    continue
                if not assoc.is_established:
                    outcomes.append((None, "association lost"))
                    continue
                try:
                    status = assoc.send_c_store(ds)
                except Exception as exc:  # noqa: BLE001
                    outcomes.append((None, f"C-STORE failed: {exc}"))
                    continue
                code = int(status.Status) if status and "Status" in status else None
                if code is None:
                    outcomes.append((None, "no response (association aborted or timed out)"))
                elif code in _STORED:
                    outcomes.append((code, None))
                else:
                    outcomes.append((code, f"destination answered status 0x{code:04X}"))
        finally:
            if assoc.is_established:
                assoc.release()
        return outcomes
