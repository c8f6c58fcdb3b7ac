"""Service configuration: a TOML file, environment overrides and embedded defaults, checked before anything runs.

Every setting has a default, so `ichvol serve` runs with no file. A file may set any subset; an environment
variable `ICHVOL_<SECTION>__<KEY>` (or `ICHVOL_<KEY>` for a top-level key such as `ICHVOL_DATA_DIR`) overrides
both; a variable without "__" counts only when it names a top-level key, so other ICHVOL_* variables are left
alone. Environment values are read as TOML values when they parse as one (`11113`, `true`, `["A", "B"]`,
`[{ae_title = "PACS", host = "h", port = 4242}]`), else as plain strings. Unknown keys and wrong types raise a
ConfigError naming the file (or variable) and the key. The result is a tree of frozen dataclasses that is built
once and passed down.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "ICHVOL_"


@dataclass(frozen=True)
class TLSConfig:
    """DICOM TLS. With a certificate and key the listener speaks TLS; destinations with `tls = true` use the
    same certificate as client certificate and `ca` to verify the peer."""

    certificate: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    require_client_certificate: bool = False

    @property
    def enabled(self) -> bool:
        return self.certificate is not None and self.key is not None


@dataclass(frozen=True)
class ListenerConfig:
    ae_title: str = "ICHVOL"
    host: str = "0.0.0.0"
    port: int = 11112
    allowed_calling_aets: tuple[str, ...] = ()  # empty: accept any calling AE (logged)
    stable_seconds: float = 30.0
    max_associations: int = 10
    max_pdu_size: int = 262144  # bounds what a peer can make us allocate per PDU
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    min_free_mb: int = 1024  # below this free space in the spool, C-STORE answers 0xA700
    watch_interval_seconds: float = 1.0  # how often the stability watcher looks for quiet studies


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""  # empty: sqlite:///<data_dir>/ichvol.db


@dataclass(frozen=True)
class Destination:
    ae_title: str = "PACS"
    host: str = "127.0.0.1"
    port: int = 4242
    tls: bool = False

    @property
    def label(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class WorkerConfig:
    ae_title: str = "ICHVOL"  # calling AE title when sending results
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    model: Path | None = None  # None: the model shipped with ichvol
    poll_seconds: float = 1.0
    lease_seconds: float = 300.0
    heartbeat_seconds: float = 10.0
    batch_size: int = 1  # jobs claimed per poll
    torch_threads: int = 0  # 0: torch's default


@dataclass(frozen=True)
class RoutingConfig:
    """Which studies are processed; a study with no series that passes is REJECTED with the reason."""

    modalities: tuple[str, ...] = ("CT",)
    body_part_pattern: str = ""  # regex on BodyPartExamined, empty: any
    description_pattern: str = ""  # regex on SeriesDescription/StudyDescription, empty: any
    min_slices: int = 10


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base_seconds: float = 5.0
    backoff_cap_seconds: float = 600.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): base * 2^(attempt-1), capped."""
        return min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** max(0, attempt - 1))


@dataclass(frozen=True)
class RetentionConfig:
    """How long received images and our results stay on disk. A study is removed `days` after its last
    instance arrived, and only once nothing of it is still queued, running or waiting to be sent; its
    database rows and audit trail are kept. 0 keeps everything (the disk then needs watching)."""

    days: float = 0.0
    sweep_interval_seconds: float = 3600.0


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("var")
    listener: ListenerConfig = field(default_factory=ListenerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    destinations: tuple[Destination, ...] = ()
    tls: TLSConfig = field(default_factory=TLSConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    job_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(3, 30.0, 600.0))
    send_retry: RetryPolicy = field(default_factory=RetryPolicy)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'ichvol.db'}"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"


_TOP_LEVEL_KEYS = frozenset(f.name for f in dataclasses.fields(Config))


def load_config(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file at `path` (if given), then `ICHVOL_*` variables from `environ`."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}  # dotted key -> where its value came from, for error messages
    source = "defaults"
    base_dir: Path | None = None
    if path is not None:
        path = Path(path)
        source = path.name
        base_dir = path.resolve().parent
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path.name}: not valid TOML: {exc}") from None
        origins = {key: path.name for key in _dotted_keys(raw)}
    _apply_environment(raw, origins, environ)
    config = _build(Config, raw, "", origins, source)
    if base_dir is not None and not config.data_dir.is_absolute() and "data_dir" in raw and \
            origins.get("data_dir") == source:
        # A relative data_dir in a file means relative to that file, so a unit file may run from anywhere.
        config = dataclasses.replace(config, data_dir=base_dir / config.data_dir)
    _check(config, origins, source)
    return config


def _dotted_keys(table: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in table.items():
        keys.append(prefix + key)
        if isinstance(value, Mapping):
            keys.extend(_dotted_keys(value, f"{prefix}{key}."))
    return keys


def _apply_environment(raw: dict[str, Any], origins: dict[str, str], environ: Mapping[str, str]) -> None:
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(parts) == 1 and parts[0] not in _TOP_LEVEL_KEYS:
            continue  # another program's ICHVOL_* variable (e.g. ICHVOL_TEST_DATABASE_URL), not a setting
        if not all(parts) or len(parts) > 2:
            raise ConfigError(f"{name}: expected ICHVOL_<KEY> or ICHVOL_<SECTION>__<KEY>")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        table = raw
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{name}: {part} is not a section")
        table[parts[-1]] = value
        origins[".".join(parts)] = name


def _build(cls: type, values: Any, prefix: str, origins: dict[str, str], source: str) -> Any:
    where = origins.get(prefix.rstrip("."), source)
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: {prefix.rstrip('.')}: expected a table, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        key = prefix + unknown[0]
        raise ConfigError(f"{origins.get(key, source)}: {key}: unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {name: _convert(hints[name], value, prefix + name, origins, source) for name, value in values.items()}
    return cls(**kwargs)


def _convert(hint: Any, value: Any, key: str, origins: dict[str, str], source: str) -> Any:
    where = origins.get(key, source)

    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: expected {expected}, got {value!r}")

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value in ("", None):
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner, value, key, origins, source)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".", origins, source)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str) and where.startswith(ENV_PREFIX):  # a comma-separated list from a variable
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise wrong("a list")
        return tuple(_convert(item, v, f"{key}[{i}]", origins, source) for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise wrong("true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong("an integer")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise wrong("a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise wrong("a string")
    if hint is Path:
        if isinstance(value, str) and value:
            return Path(value).expanduser()
        raise wrong("a path")
    raise TypeError(f"unsupported configuration type {hint} for {key}")  # a programming error


def _check(config: Config, origins: dict[str, str], source: str) -> None:
    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{origins.get(key, source)}: {key}: {message}")

    listener = config.listener
    if not 0 <= listener.port <= 65535:
        fail("listener.port", f"expected a port number 0-65535, got {listener.port}")
    for key, ae in [("listener.ae_title", listener.ae_title), ("worker.ae_title", config.worker.ae_title)] + [
        (f"destinations[{i}].ae_title", d.ae_title) for i, d in enumerate(config.destinations)
    ] + [(f"listener.allowed_calling_aets[{i}]", a) for i, a in enumerate(listener.allowed_calling_aets)]:
        if not ae.strip() or len(ae) > 16 or "\\" in ae or not ae.isascii():
            fail(key, f"expected an AE title of 1-16 ASCII characters, got {ae!r}")
    for i, dest in enumerate(config.destinations):
        if not 1 <= dest.port <= 65535:
            fail(f"destinations[{i}].port", f"expected a port number 1-65535, got {dest.port}")
    if listener.stable_seconds < 0:
        fail("listener.stable_seconds", "must not be negative")
    if listener.max_associations < 1:
        fail("listener.max_associations", "must be at least 1")
    if not 0 <= listener.max_pdu_size <= 2**26:
        fail("listener.max_pdu_size", "expected 0 (unlimited) or at most 64 MiB")
    if config.worker.device != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?", config.worker.device):
        fail("worker.device", f"expected auto, cpu, cuda or cuda:N, got {config.worker.device!r}")
    if config.worker.heartbeat_seconds >= config.worker.lease_seconds:
        fail("worker.heartbeat_seconds", "must be shorter than worker.lease_seconds")
    if config.worker.batch_size < 1:
        fail("worker.batch_size", "must be at least 1")
    for name in ("body_part_pattern", "description_pattern"):
        try:
            re.compile(getattr(config.routing, name))
        except re.error as exc:
            fail(f"routing.{name}", f"not a valid regular expression: {exc}")
    for name in ("job_retry", "send_retry"):
        policy: RetryPolicy = getattr(config, name)
        if policy.max_attempts < 1:
            fail(f"{name}.max_attempts", "must be at least 1")
        if policy.backoff_base_seconds < 0 or policy.backoff_cap_seconds < policy.backoff_base_seconds:
            fail(f"{name}.backoff_cap_seconds", "must be at least backoff_base_seconds, both non-negative")
    if config.retention.days < 0:
        fail("retention.days", "must not be negative (0 keeps everything)")
    if config.retention.sweep_interval_seconds <= 0:
        fail("retention.sweep_interval_seconds", "must be positive")
    tls = config.tls
    if (tls.certificate is None) != (tls.key is None):
        fail("tls.key", "certificate and key must be given together")
    for name in ("certificate", "key", "ca"):
        p = getattr(tls, name)
        if p is not None and not p.is_file():
            fail(f"tls.{name}", f"file not found: {p}")
    if tls.require_client_certificate and tls.ca is None:
        fail("tls.ca", "require_client_certificate needs a CA to verify client certificates")
    if any(d.tls for d in config.destinations) and tls.ca is None:
        fail("tls.ca", "a destination with tls = true needs a CA to verify it")
    if not config.database_url.split(":", 1)[0].startswith(("sqlite", "postgresql")):
        fail("database.url", f"expected a sqlite:// or postgresql+psycopg:// URL, got {config.database.url!r}")
