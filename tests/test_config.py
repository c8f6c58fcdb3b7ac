"""Configuration: defaults, TOML file, ICHVOL_* overrides, and errors that name the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ichvol.config import Config, RetryPolicy, load_config
from ichvol.errors import ConfigError

ISSUE_EXAMPLE = """
data_dir = "var"
[listener]
ae_title = "ICHVOL"
host = "0.0.0.0"
port = 11112
allowed_calling_aets = ["PACS"]
stable_seconds = 30
[database]
url = "sqlite:///var/ichvol.db"
[[destinations]]
ae_title = "PACS"
host = "127.0.0.1"
port = 4242
"""


def write(tmp_path: Path, text: str, name: str = "ichvol.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_need_no_file():
    config = load_config(None, environ={})
    assert config == Config()
    assert config.listener.port == 11112 and config.listener.ae_title == "ICHVOL"
    assert config.database_url == "sqlite:///var/ichvol.db"
    assert config.destinations == ()


def test_issue_example_loads_and_relative_data_dir_is_relative_to_the_file(tmp_path):
    config = load_config(write(tmp_path, ISSUE_EXAMPLE), environ={})
    assert config.data_dir == tmp_path / "var"
    assert config.listener.allowed_calling_aets == ("PACS",)
    assert config.listener.stable_seconds == 30.0
    assert [(d.ae_title, d.host, d.port) for d in config.destinations] == [("PACS", "127.0.0.1", 4242)]
    assert config.database_url == "sqlite:///var/ichvol.db"


def test_environment_overrides_file(tmp_path):
    environ = {
        "ICHVOL_LISTENER__PORT": "11113",
        "ICHVOL_LISTENER__ALLOWED_CALLING_AETS": "A, B",
        "ICHVOL_DATABASE__URL": "postgresql+psycopg://u@h/db",
        "ICHVOL_DATA_DIR": "/srv/ichvol",
        "ICHVOL_WORKER__DEVICE": "cuda:1",
        "ICHVOL_DESTINATIONS": '[{ae_title = "X", host = "h", port = 104}, {ae_title = "Y", host = "g", port = 1}]',
        "OTHER_VARIABLE": "ignored",
        "ICHVOL_TEST_DATABASE_URL": "not a setting: ignored",
    }
    config = load_config(write(tmp_path, ISSUE_EXAMPLE), environ=environ)
    assert config.listener.port == 11113
    assert config.listener.allowed_calling_aets == ("A", "B")
    assert config.database_url == "postgresql+psycopg://u@h/db"
    assert config.data_dir == Path("/srv/ichvol")
    assert config.worker.device == "cuda:1"
    assert [d.label for d in config.destinations] == ["X@h:104", "Y@g:1"]


@pytest.mark.parametrize(("text", "message"), [
    ("[listener]\nport = 'abc'\n", "ichvol.toml: listener.port: expected an integer, got 'abc'"),
    ("[listener]\nprot = 1\n", "ichvol.toml: listener.prot: unknown key"),
    ("[listner]\nport = 1\n", "ichvol.toml: listner: unknown key"),
    ("[listener]\nport = 70000\n", "ichvol.toml: listener.port: expected a port number"),
    ("[listener]\nallowed_calling_aets = 'PACS'\n", "ichvol.toml: listener.allowed_calling_aets: expected a list"),
    ("[listener]\nae_title = 'MUCH_TOO_LONG_AE_TITLE'\n", "ichvol.toml: listener.ae_title: expected an AE title"),
    ("[[destinations]]\nae_title = 'P'\nport = true\n", "ichvol.toml: destinations[0].port: expected an integer"),
    ("[worker]\ndevice = 'tpu'\n", "ichvol.toml: worker.device: expected auto, cpu, cuda"),
    ("[routing]\nbody_part_pattern = '(['\n", "ichvol.toml: routing.body_part_pattern: not a valid regular"),
    ("[tls]\ncertificate = '/nonexistent.crt'\n", "ichvol.toml: tls.key: certificate and key"),
    ("[send_retry]\nmax_attempts = 0\n", "ichvol.toml: send_retry.max_attempts: must be at least 1"),
    ("[listener\n", "ichvol.toml: not valid TOML"),
    ("[retention]\ndays = -1\n", "ichvol.toml: retention.days: must not be negative"),
    ("[retention]\nsweep_interval_seconds = 0\n", "ichvol.toml: retention.sweep_interval_seconds: must be positive"),
])
def test_errors_name_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert message in str(info.value)


def test_environment_errors_name_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"ICHVOL_LISTENER__PORT: listener.port: expected an integer, got 'x'"):
        load_config(None, environ={"ICHVOL_LISTENER__PORT": "x"})
    with pytest.raises(ConfigError, match=r"ICHVOL_LISTENER__NOPE: listener.nope: unknown key"):
        load_config(None, environ={"ICHVOL_LISTENER__NOPE": "1"})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", environ={})


def test_config_is_frozen():
    config = load_config(None, environ={})
    with pytest.raises(AttributeError):
        config.listener.port = 1  # type: ignore[misc]


def test_backoff_is_exponential_and_capped():
    policy = RetryPolicy(max_attempts=10, backoff_base_seconds=2, backoff_cap_seconds=20)
    assert [policy.delay(a) for a in range(1, 6)] == [2, 4, 8, 16, 20]


@pytest.mark.parametrize("command", ["serve", "report"])
def test_cli_reports_config_error_without_traceback(tmp_path, command):
    path = write(tmp_path, "[listener]\nport = 'abc'\n")
    args = [sys.executable, "-m", "ichvol", command, "--config", str(path)]
    args += {"report": ["1.2.3"], "resubmit": ["1.2.3"]}.get(command, [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "listener.port: expected an integer, got 'abc'" in result.stderr
    assert "Traceback" not in result.stderr
