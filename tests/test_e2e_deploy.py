"""deploy/: the example configuration, Orthanc config, compose file, systemd units and TLS script are
checked with the tools that consume them (E's config loader, systemd-analyze, openssl, DCMTK)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from peers import StoreSCP, echoscu

from ichvol.config import Config, load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _config_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            keys.extend(_config_keys(type(default), f"{prefix}{f.name}."))
        elif f.name == "destinations":
            keys.extend(f"destinations.{d.name}" for d in dataclasses.fields(_destination_type()))
        else:
            keys.append(prefix + f.name)
    return keys


def _destination_type() -> type:
    from ichvol.config import Destination

    return Destination


def test_example_config_loads_with_the_service_loader():
    config = load_config(DEPLOY / "ichvol.toml", environ={})
    assert config.listener.ae_title == "ICHVOL"
    assert config.listener.allowed_calling_aets == ("PACS",)
    assert [d.ae_title for d in config.destinations] == ["PACS"]


def test_example_config_documents_every_key():
    """Every key of the loader's Config appears in the example (set, or commented out with its meaning)."""
    text = (DEPLOY / "ichvol.toml").read_text()
    sections: dict[str, set[str]] = {}
    current = ""
    for line in text.splitlines():
        header = re.match(r"\s*\[\[?([a-z_]+)\]\]?", line)
        if header:
            current = header.group(1)
            continue
        key = re.match(r"\s*#?\s*([a-z_]+)\s*=", line)
        if key:
            sections.setdefault(current, set()).add(key.group(1))
    missing = []
    for dotted in _config_keys():
        section, _, key = dotted.rpartition(".")
        if key not in sections.get(section, set()):
            missing.append(dotted)
    assert missing == [], f"keys of ichvol.config.Config not documented in deploy/ichvol.toml: {missing}"


def test_example_config_with_environment_overrides_as_in_compose():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    env = {k: str(v) for k, v in compose["services"]["ichvol-worker"]["environment"].items()}
    config = load_config(DEPLOY / "ichvol.toml", environ=env)
    assert config.database_url.startswith("postgresql+psycopg://")
    assert config.worker.device == "cuda"
    assert [(d.ae_title, d.host, d.port) for d in config.destinations] == [("PACS", "orthanc", 4242)]


def test_compose_file_has_the_four_services_and_a_gpu_worker():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"orthanc", "postgres", "ichvol-listener", "ichvol-worker"}
    devices = services["ichvol-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["ichvol-listener"]["command"][0] == "listen"
    assert services["ichvol-worker"]["command"][0] == "work"
    for service in services.values():  # every bind-mounted file exists in deploy/
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).is_file(), source
    build = services["ichvol-listener"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_orthanc_config_routes_to_the_listener_with_the_lua_script():
    config = json.loads((DEPLOY / "orthanc" / "orthanc.json").read_text())
    lua = (DEPLOY / "orthanc" / "route-to-ichvol.lua").read_text()
    assert Path(config["LuaScripts"][0]).name == "route-to-ichvol.lua"
    listener = load_config(DEPLOY / "ichvol.toml", environ={}).listener
    assert config["DicomModalities"]["ichvol"]["AET"] == listener.ae_title
    metadata = re.search(r"ROUTED_METADATA = '(\w+)'", lua).group(1)
    assert metadata in config["UserMetadata"]
    assert re.search(r"ICHVOL_MODALITY = '(\w+)'", lua).group(1) in config["DicomModalities"]


@pytest.mark.parametrize("unit", ["ichvol-listener.service", "ichvol-worker@.service"])
def test_systemd_units_verify(unit, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (DEPLOY / "systemd" / unit).read_text()
    for required in ("User=ichvol", "ProtectSystem=strict", "ReadWritePaths=/var/lib/ichvol", "Restart=on-failure"):
        assert required in text
    # systemd-analyze checks that ExecStart exists: point it at this checkout's ichvol.
    ichvol = shutil.which("ichvol") or sys.executable
    instance = unit.replace("@.", "@1.")
    (tmp_path / instance).write_text(text.replace("/opt/ichvol/venv/bin/ichvol", ichvol))
    result = subprocess.run([analyze, "verify", str(tmp_path / instance)], capture_output=True, text=True,
                            timeout=60)
    problems = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and problems == [], result.stderr


def test_tls_script_makes_a_ca_and_certificates_it_signed(tls_certs):
    for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key"):
        assert (tls_certs / name).is_file()
    result = subprocess.run(["openssl", "verify", "-CAfile", tls_certs / "ca.crt", tls_certs / "server.crt",
                             tls_certs / "client.crt"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    san = subprocess.run(["openssl", "x509", "-in", tls_certs / "server.crt", "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True).stdout
    assert "127.0.0.1" in san and "localhost" in san
    assert (tls_certs / "server.key").stat().st_mode & 0o077 == 0


def test_tls_certificates_work_between_dcmtk_peers(tls_certs, tmp_path):
    """The certificates are usable by DCMTK as it is built here (storescp as a TLS server)."""
    key, cert, ca = tls_certs / "server.key", tls_certs / "server.crt", tls_certs / "ca.crt"
    client = ["+tls", tls_certs / "client.key", tls_certs / "client.crt", "+cf", ca]
    with StoreSCP(tmp_path, ae_title="ICHVOL", options=["+tls", key, cert, "+cf", ca]) as server:
        assert echoscu(server.port, extra=client).returncode == 0
        assert echoscu(server.port).returncode != 0  # a plain TCP client fails the handshake
