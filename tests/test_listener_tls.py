"""DICOM TLS: the listener requires a client certificate signed by the CA; results go to a TLS destination.
Certificates come from deploy/make-tls-certs.sh; the peers are DCMTK echoscu and storescp."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from peers import StoreSCP, echoscu, free_port, require
from service_support import make_config, sessions_for

from ichvol.listener.server import Listener
from ichvol.service.sender import Sender

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "make-tls-certs.sh"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    require("openssl")
    if not SCRIPT.is_file():
        pytest.skip("deploy/make-tls-certs.sh is not there")
    out = tmp_path_factory.mktemp("tls")
    subprocess.run(["bash", str(SCRIPT), str(out)], check=True, capture_output=True, timeout=120)
    return out


def tls_env(certs: Path, require_client: bool, pair: str = "server") -> dict[str, str]:
    return {"TLS__CERTIFICATE": f'"{certs / f"{pair}.crt"}"', "TLS__KEY": f'"{certs / f"{pair}.key"}"',
            "TLS__CA": f'"{certs / "ca.crt"}"', "TLS__REQUIRE_CLIENT_CERTIFICATE": str(require_client).lower()}


def test_listener_requires_a_client_certificate(tmp_path, certs):
    require("echoscu")
    config = make_config(tmp_path, **tls_env(certs, require_client=True))
    listener = Listener(config, sessions_for(config))
    _, port = listener.start()
    try:
        with_cert = ["+tls", certs / "client.key", certs / "client.crt", "+cf", certs / "ca.crt"]
        assert echoscu(port, extra=with_cert).returncode == 0
        with socket.create_connection(("127.0.0.1", port)):  # a client that never starts its handshake ...
            assert echoscu(port, extra=with_cert).returncode == 0  # ... does not hold up the next one
        assert echoscu(port).returncode != 0  # plain TCP
        assert echoscu(port, extra=["+tla", "+cf", certs / "ca.crt"]).returncode != 0  # TLS, no certificate
        assert echoscu(port, extra=with_cert).returncode == 0  # and the listener still serves
    finally:
        listener.stop()


def test_results_are_sent_over_tls(tmp_path, certs):
    from ichvol.db.models import Job, Send
    from ichvol.db.queue import ReceivedInstance, add_sends, queue_stable_studies, record_instance

    port = free_port()
    config = make_config(tmp_path, DESTINATIONS=f'[{{ae_title="PACS", host="127.0.0.1", port={port}, tls=true}}]',
                         **tls_env(certs, require_client=False, pair="client"))
    sessions = sessions_for(config)
    from peers import write_ct_series

    [ct] = write_ct_series(tmp_path / "ct", slices=1)
    with sessions.begin() as s:
        record_instance(s, ReceivedInstance("1.2.3", "1.2.3.1", "1.2.3.1.1", "1.2.840.10008.5.1.4.1.1.2", "CT",
                                            None, None, None, None), "x", 1, 0.0)
        [job] = queue_stable_studies(s, 0, config.routing.__class__(min_slices=1), 10.0)
        add_sends(s, s.get(Job, job.id), config.destinations, [("SR", "1.2.3.1.1", ct)], now=10.0)
    # storescp (with the server pair) verifies our certificate (a client pair: clientAuth) against the CA.
    options = ["+tls", certs / "server.key", certs / "server.crt", "+cf", certs / "ca.crt"]
    with StoreSCP(tmp_path / "pacs", port=port, options=options) as pacs:
        assert Sender(config, sessions).send_due()
        assert len(pacs.received()) == 1
    with sessions() as s:
        assert s.query(Send).one().state == "SENT"
