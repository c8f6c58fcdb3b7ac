"""The DICOM listener: a pynetdicom SCP for C-ECHO and C-STORE. Handlers only translate events; the storing
is InstanceStore's and the queueing the stability watcher's."""

from __future__ import annotations

import logging
import socketserver
import ssl
import threading

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy.orm import Session, sessionmaker

from ..config import Config, TLSConfig
from ..db import audit
from .spool import Spool
from .store import OUT_OF_RESOURCES, AssociationTally, InstanceStore

log = logging.getLogger(__name__)

# Room for an A-ASSOCIATE-RQ (presentation contexts, user identity), which the PDU size limit does not cover.
ASSOCIATION_PDU_ALLOWANCE = 64 * 1024
UNLIMITED_PDU_CAP = 2**26  # with max_pdu_size = 0 ("unlimited") a PDU may still not exceed 64 MiB


def server_ssl_context(tls: TLSConfig) -> ssl.SSLContext | None:
    if not tls.enabled:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.certificate), str(tls.key))
    if tls.ca is not None:
        context.load_verify_locations(str(tls.ca))
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL \
        if tls.ca is not None else ssl.CERT_NONE
    return context


class BoundedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's server, with the network timeout also on each accepted connection (and on its TLS
    handshake). pynetdicom sets it on the listening socket only, so a peer that sends a PDU header announcing
    more bytes than it sends (or half a TLS handshake) would hold a connection, and with TLS the acceptor, forever."""

    def get_request(self):  # noqa: ANN201
        client, address = self.socket.accept()
        client.settimeout(self.ae.network_timeout)
        if self.ssl_context:
            # The handshake happens on the first read, in the association's thread, not in the acceptor's.
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def shutdown(self) -> None:
        # Not registered with the AE (we start the thread ourselves), so skip the AE bookkeeping.
        socketserver.TCPServer.shutdown(self)
        self.server_close()


class Listener:
    """Owns the AE and its server thread; start() returns once the port is bound."""

    def __init__(self, config: Config, sessions: sessionmaker[Session]):
        self.config = config
        self.sessions = sessions
        spool = Spool(config.spool_dir)
        removed = spool.clean_temporary()
        if removed:
            log.warning("removed %d partial spool files left by an earlier run", removed)
        self.store = InstanceStore(spool, sessions, config.listener.min_free_mb * 1024 * 1024)
        orphans = self.store.remove_unrecorded_files()
        if orphans:
            log.warning("removed %d spool files never recorded (listener killed before acknowledging them)", orphans)
        self._tallies: dict[int, AssociationTally] = {}
        self._lock = threading.Lock()
        self._server = None

    def make_ae(self) -> AE:
        cfg = self.config.listener
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_associations = cfg.max_associations
        ae.maximum_pdu_size = cfg.max_pdu_size
        ae.acse_timeout = cfg.acse_timeout
        ae.dimse_timeout = cfg.dimse_timeout
        ae.network_timeout = cfg.network_timeout
        ae.require_calling_aet = list(cfg.allowed_calling_aets)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        return ae

    def start(self) -> tuple[str, int]:
        cfg = self.config.listener
        if not cfg.allowed_calling_aets:
            log.warning("listener accepts associations from any calling AE (allowed_calling_aets is empty)")
        handlers = [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        ae = self.make_ae()
        self._server = ae.make_server(
            (cfg.host, cfg.port), evt_handlers=handlers, ssl_context=server_ssl_context(self.config.tls),
            server_class=BoundedAssociationServer,
        )
        threading.Thread(target=self._server.serve_forever, name="dicom-acceptor", daemon=True).start()
        host, port = self._server.server_address[:2]
        log.info("listening as %s on %s:%d%s", cfg.ae_title, host, port, " (TLS)" if self.config.tls.enabled else "")
        return host, port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- handlers: translate and delegate -------------------------------------------------------------
    def _on_echo(self, event: evt.Event) -> int:
        return 0x0000

    def _on_store(self, event: evt.Event) -> int:
        try:
            encoded = event.encoded_dataset()
            dataset = event.dataset
        except Exception as exc:  # noqa: BLE001 - an undecodable dataset is the sender's problem
            log.warning("C-STORE dataset cannot be decoded: %s", type(exc).__name__)
            return 0xC000
        tally = self._tallies.get(id(event.assoc))
        try:
            return self.store.store(encoded, dataset, tally)
        except Exception:  # noqa: BLE001 - never a traceback back to pynetdicom, never a false success
            log.exception("C-STORE failed")
            return OUT_OF_RESOURCES

    def _on_open(self, event: evt.Event) -> None:
        bound_pdu_reads(event.assoc.dul.socket, self.config.listener.max_pdu_size)

    def _on_accepted(self, event: evt.Event) -> None:
        calling, address = _peer(event)
        with self._lock:
            self._tallies[id(event.assoc)] = AssociationTally(calling, address)
        log.info("association accepted from %s (%s)", calling, address)
        self._audit("association_accepted", calling_ae=calling, address=address)

    def _on_rejected(self, event: evt.Event) -> None:
        calling, address = _peer(event)
        log.warning("association rejected from %s (%s)", calling, address)
        self._audit("association_rejected", calling_ae=calling, address=address)

    def _on_close(self, event: evt.Event) -> None:
        with self._lock:
            tally = self._tallies.pop(id(event.assoc), None)
        if tally is not None and tally.counts:
            try:
                self.store.audit_association(tally)
            except Exception:  # noqa: BLE001
                log.exception("cannot write the association's audit events")

    def _audit(self, event_name: str, **details: str) -> None:
        try:
            with self.sessions.begin() as session:
                audit.record(session, event_name, None, **details)
        except Exception:  # noqa: BLE001 - auditing must not take the listener down
            log.exception("cannot write audit event %s", event_name)


def bound_pdu_reads(association_socket, max_pdu_size: int) -> None:
    """pynetdicom reads a PDU of whatever length its header declares (up to 4 GiB) into memory. Refuse a
    declared length above our limit before reading it: the OSError makes pynetdicom close the connection."""
    limit = (max_pdu_size or UNLIMITED_PDU_CAP) + ASSOCIATION_PDU_ALLOWANCE
    read = association_socket.recv

    def bounded_recv(nr_bytes: int) -> bytearray:
        if nr_bytes > limit:
            log.warning("closing a connection whose peer announced a %d-byte PDU (limit %d)", nr_bytes, limit)
            raise OSError("PDU longer than the listener's limit")
        return read(nr_bytes)

    association_socket.recv = bounded_recv


def _peer(event: evt.Event) -> tuple[str, str]:
    requestor = event.assoc.requestor
    return str(requestor.ae_title or "").strip(), f"{requestor.address}:{requestor.port}"
