"""Fixtures shared by several test modules."""

import subprocess
from pathlib import Path

import pytest
from peers import require

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory):
    """A test CA with server and client certificates, made by the deploy script operators use."""
    require("openssl")
    out = tmp_path_factory.mktemp("tls")
    subprocess.run(["bash", str(DEPLOY / "make-tls-certs.sh"), str(out)], check=True, capture_output=True,
                   timeout=120)
    return out
