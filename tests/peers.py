"""Real DICOM peers for the tests: DCMTK tools, a DCMTK storescp receiver, Orthanc, and `ichvol serve`.

Every peer runs as a subprocess on free ports, logs to a file under the test's tmp dir (pytest keeps the
last few tmp dirs, so logs survive a failure) and is stopped in `stop()` / on leaving its `with` block.
Nothing here mocks a peer: when a tool is missing the caller skips with `require(...)`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pydicom

# Prefer the Debian DCMTK binaries: pynetdicom installs Python apps with the same names (storescp, ...)
# that shadow them on PATH and take different options.
DCMTK_DIRS = ("/usr/bin", "/usr/local/bin")


def dcmtk(tool: str) -> str | None:
    """Path of a DCMTK command-line tool (storescp, storescu, echoscu, ...), or None when not installed."""
    candidates = [str(Path(d) / tool) for d in DCMTK_DIRS]
    found = shutil.which(tool)
    if found:
        candidates.append(found)
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        try:
            version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in version.lower():
            return path
    return None


def require(tool: str) -> str:
    """Path of a DCMTK tool or another binary; skips the calling test when it is missing."""
    import pytest

    path = dcmtk(tool) or shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2,
               peers: Iterable[Peer] = ()) -> Any:
    """Poll `condition` until it returns something truthy; on timeout fail with the peers' log tails."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for peer in peers:
            if not peer.running and not peer.expect_exit:
                raise AssertionError(f"{peer.name} exited ({peer.returncode}) while waiting for {what}\n"
                                     + peer.log_tail())
        if time.monotonic() > deadline:
            tails = "\n".join(peer.log_tail() for peer in peers)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
        time.sleep(interval)


class Peer:
    """A subprocess with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.expect_exit = False

    def start(self) -> Peer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process for its lifetime
        log.write(f"\n=== {' '.join(self.argv)}\n".encode())
        log.flush()
        env = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                        start_new_session=True)
        log.close()
        self.expect_exit = False
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the peer and any children it forked) and reap it."""
        if self.running:
            self.expect_exit = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        if not self.running:
            return
        self.expect_exit = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- {self.name} log ({self.log_path}) ---\n{tail}"

    def __enter__(self) -> Peer:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StoreSCP(Peer):
    """DCMTK storescp as a receiving PACS. `options` are extra storescp options: fault flags such as
    ["--refuse"], ["--reject"], ["--abort-after"], ["--sleep-during", "5"], or TLS options. Each received
    object gets its own file (+uf), so an object sent twice is counted twice."""

    def __init__(self, workdir: Path, ae_title: str = "PACS", port: int | None = None,
                 options: Sequence[Any] = ()):
        self.ae_title = ae_title
        self.port = port or free_port()
        self.out_dir = workdir / "received"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        binary = dcmtk("storescp")
        if binary is None:
            raise FileNotFoundError("DCMTK storescp is not installed")
        argv = [binary, "-v", "-aet", ae_title, "+xa", "+uf", "-od", self.out_dir, *options, self.port]
        super().__init__(f"storescp:{self.port}", argv, workdir / f"storescp-{self.port}.log")

    def start(self) -> StoreSCP:
        super().start()
        wait_until(lambda: port_open(self.port), 20, f"storescp on port {self.port}", peers=[self])
        return self

    def received_items(self) -> list[tuple[Path, pydicom.Dataset]]:
        """(file, header) of every object received so far; a file still being written (unreadable) is left
        out until it is complete."""
        items = []
        for path in self.received_files():
            with contextlib.suppress(Exception):
                items.append((path, pydicom.dcmread(path, stop_before_pixels=True)))
        return items

    def received(self) -> list[pydicom.Dataset]:
        return [ds for _, ds in self.received_items()]

    def received_files(self) -> list[Path]:
        return sorted(p for p in self.out_dir.iterdir() if p.is_file() and not p.name.startswith("."))

    def wait_for_modalities(self, modalities: Sequence[str], timeout: float,
                            peers: Iterable[Peer] = ()) -> list[pydicom.Dataset]:
        """Wait until objects of every modality in `modalities` (e.g. ["SEG", "SR"]) have arrived."""

        def arrived() -> list[pydicom.Dataset] | None:
            got = self.received()
            have = {getattr(ds, "Modality", "") for ds in got}
            return got if set(modalities) <= have else None

        return wait_until(arrived, timeout, f"{'+'.join(modalities)} at {self.name}", interval=0.5,
                          peers=[self, *peers])


class Orthanc(Peer):
    """Orthanc with a temporary storage/index dir, free DICOM + HTTP ports and the given Lua scripts.
    `modalities` maps a symbolic name to (AE title, host, port), as in Orthanc's DicomModalities."""

    def __init__(self, workdir: Path, modalities: dict[str, tuple[str, str, int]] | None = None,
                 lua_scripts: Sequence[Path] = (), stable_age: int = 1, ae_title: str = "ORTHANC",
                 base_config: Path | None = None):
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError("Orthanc is not installed")
        self.ae_title = ae_title
        self.dicom_port = free_port()
        self.http_port = free_port()
        config: dict[str, Any] = json.loads(base_config.read_text()) if base_config else {}
        config.update({
            "Name": "ichvol-test",
            "StorageDirectory": str(workdir / "orthanc-storage"),
            "IndexDirectory": str(workdir / "orthanc-storage"),
            "DicomAet": ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "StableAge": stable_age,
            "Plugins": [],
            "LuaScripts": [str(p) for p in lua_scripts],
        })
        if modalities is not None:
            config["DicomModalities"] = {name: list(m) for name, m in modalities.items()}
        self.config = config
        config_path = workdir / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        super().__init__(f"orthanc:{self.dicom_port}", [binary, "--verbose", config_path],
                         workdir / "orthanc.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Orthanc:
        super().start()
        wait_until(self._http_up, 60, "Orthanc's REST API", peers=[self])
        wait_until(lambda: port_open(self.dicom_port), 30, "Orthanc's DICOM port", peers=[self])
        return self

    def _http_up(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes | str | dict | list | None = None,
                content_type: str = "application/json") -> Any:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
        if response.headers.get_content_type() == "application/json" and payload:
            return json.loads(payload)
        return payload

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def upload(self, paths: Iterable[Path]) -> list[dict]:
        """POST each DICOM file to /instances; returns Orthanc's answers (ID, ParentStudy, Status ...)."""
        return [self.request("POST", "/instances", Path(p).read_bytes(), "application/dicom") for p in paths]

    def study_id(self, study_instance_uid: str) -> str | None:
        found = self.post("/tools/lookup", study_instance_uid)
        studies = [item["ID"] for item in found if item.get("Type") == "Study"]
        return studies[0] if studies else None

    def series_of_study(self, study_id: str) -> list[dict]:
        return self.get(f"/studies/{study_id}/series")


class IchvolService(Peer):
    """`ichvol <command> --config FILE` (serve, listen or work) as a subprocess."""

    def __init__(self, workdir: Path, config_path: Path, command: str = "serve",
                 env: dict[str, str] | None = None, name: str | None = None, listen_port: int | None = None):
        self.config_path = config_path
        self.listen_port = listen_port
        argv = [sys.executable, "-m", "ichvol", command, "--config", config_path]
        base_env = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        label = name or f"ichvol-{command}"
        super().__init__(label, argv, workdir / f"{label}.log", env={**base_env, **(env or {})})

    def start(self) -> IchvolService:
        super().start()
        if self.listen_port is not None:
            wait_until(lambda: port_open(self.listen_port), 60, f"{self.name} listening on "
                       f"{self.listen_port}", peers=[self])
        return self


def run_tool(argv: Sequence[Any], timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    """Run a short-lived tool (storescu, echoscu, ichvol report ...) and capture its output."""
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def storescu(port: int, files: Iterable[Path], called_aet: str = "ICHVOL", calling_aet: str = "PACS",
             extra: Sequence[str] = (), timeout: float = 120) -> subprocess.CompletedProcess:
    """Send files with DCMTK storescu (one association)."""
    binary = require("storescu")
    return run_tool([binary, "-aet", calling_aet, "-aec", called_aet, *extra, "127.0.0.1", port, *files],
                    timeout=timeout)


def echoscu(port: int, called_aet: str = "ICHVOL", calling_aet: str = "PACS", extra: Sequence[str] = (),
            timeout: float = 30) -> subprocess.CompletedProcess:
    binary = require("echoscu")
    return run_tool([binary, "-aet", calling_aet, "-aec", called_aet, *extra, "127.0.0.1", port],
                    timeout=timeout)


def toml_dumps(config: dict[str, Any]) -> str:
    """TOML for the simple configs the tests write (scalars, lists of scalars, tables, arrays of tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (str, Path)):
            return json.dumps(str(v))
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    def table(prefix: str, items: dict[str, Any], out: list[str]) -> None:
        scalars = {k: v for k, v in items.items() if not _is_table(v) and not _is_table_array(v)}
        if prefix and (scalars or not items):
            out.append(f"[{prefix}]")
        out.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in items.items():
            name = f"{prefix}.{k}" if prefix else k
            if _is_table(v):
                table(name, v, out)
            elif _is_table_array(v):
                for entry in v:
                    out.append(f"[[{name}]]")
                    out.extend(f"{ek} = {value(ev)}" for ek, ev in entry.items())

    lines: list[str] = []
    table("", config, lines)
    return "\n".join(lines) + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def ichvol_config(data_dir: Path, listen_port: int, destinations: Sequence[tuple[str, str, int]],
                  allowed_calling_aets: Sequence[str] = ("PACS",), stable_seconds: float = 1,
                  database_url: str | None = None, **sections: dict[str, Any]) -> dict[str, Any]:
    """A service config with the issue's fixed keys; `sections` adds or overrides whole tables."""
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "listener": {"ae_title": "ICHVOL", "host": "127.0.0.1", "port": listen_port,
                     "allowed_calling_aets": list(allowed_calling_aets), "stable_seconds": stable_seconds},
        "database": {"url": database_url or f"sqlite:///{data_dir / 'ichvol.db'}"},
        "destinations": [{"ae_title": ae, "host": host, "port": port} for ae, host, port in destinations],
    }
    for name, settings in sections.items():
        config[name] = {**config.get(name, {}), **settings} if isinstance(settings, dict) else settings
    return config


def write_ct_series(out_dir: Path, slices: int = 4, size: int = 16, study_uid: str | None = None,
                    modality: str = "CT", patient_id: str = "PEERS-TEST", skull: bool = True) -> list[Path]:
    """A tiny valid axial CT series at 1 mm pixels, for tests of routing, transport and the service's
    handling of jobs: a bone ring around water with noise (`skull=False`: water + noise only, which the model
    refuses as not a head). What else is inside the pixels does not matter there; tests of the segmentation
    use ichvol's synth."""
    import numpy as np
    from seg_sr_helpers import ct_series

    out_dir.mkdir(parents=True, exist_ok=True)
    hu = np.zeros((size, size))
    if skull:
        yy, xx = np.indices((size, size)) - (size - 1) / 2
        radius = np.hypot(yy, xx) / size
        hu[radius >= 0.40] = 1000.0
        hu[radius >= 0.46] = -1000.0
    noisy = hu + np.random.default_rng(0).normal(0, 5, (slices, size, size))
    datasets = ct_series(n_slices=slices, rows=size, columns=size, pixel_spacing=(1.0, 1.0),
                         hu=np.rint(noisy).astype(np.int16), study_uid=study_uid)
    paths = []
    for index, ds in enumerate(datasets):
        ds.Modality, ds.PatientID, ds.PatientName, ds.BodyPartExamined = modality, patient_id, "Peers^Test", "HEAD"
        path = out_dir / f"ct{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A model folder of the shipped architecture family with few filters and untrained (seeded) weights: the
    transport and fault tests need a worker that really runs the cascade, not a good segmentation."""
    from model_phantoms import write_untrained_model

    return write_untrained_model(folder, seed=seed)


def fast_service_sections(model: Path | None = None, lease_seconds: float = 30) -> dict[str, dict[str, Any]]:
    """Settings that make a test service react in well under a second (polling, backoff, leases)."""
    worker: dict[str, Any] = {"device": "cpu", "poll_seconds": 0.2, "lease_seconds": lease_seconds,
                              "heartbeat_seconds": min(1.0, lease_seconds / 3), "torch_threads": 1}
    if model is not None:
        worker["model"] = str(model)
    return {
        "listener": {"watch_interval_seconds": 0.2, "min_free_mb": 1},
        "worker": worker,
        "job_retry": {"max_attempts": 3, "backoff_base_seconds": 0.5, "backoff_cap_seconds": 1},
        "send_retry": {"max_attempts": 50, "backoff_base_seconds": 0.5, "backoff_cap_seconds": 1},
    }


def write_service_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(toml_dumps(config))
    return path


class ServiceDatabase:
    """Read-only look at a service's queue while it runs (the tests' probe; `ichvol report` is audited)."""

    def __init__(self, url: str):
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(url)

    def jobs(self, study_uid: str) -> list[Any]:
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from ichvol.db.models import Job

        try:
            with Session(self.engine, expire_on_commit=False) as session:
                jobs = list(session.scalars(select(Job).where(Job.study_uid == study_uid).order_by(Job.id)))
                for job in jobs:
                    _ = [s.state for s in job.sends]  # load while the session is open
                session.expunge_all()
                return jobs
        except Exception:  # noqa: BLE001 - the service may not have created its tables yet
            return []

    def instances(self, study_uid: str) -> list[Any]:
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from ichvol.db.models import Instance, Study

        try:
            with Session(self.engine, expire_on_commit=False) as session:
                rows = list(session.scalars(select(Instance).join(Study, Instance.study_id == Study.id)
                                            .where(Study.study_uid == study_uid)))
                session.expunge_all()
                return rows
        except Exception:  # noqa: BLE001
            return []

    def close(self) -> None:
        self.engine.dispose()


def ichvol_report(config_path: Path, study_uid: str) -> list[dict]:
    """`ichvol report STUDY_UID --json` (the public interface) as data."""
    result = run_tool([sys.executable, "-m", "ichvol", "report", study_uid, "--json", "--config", config_path],
                      timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"ichvol report failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout)


def synth_study(base_dir: Path, seed: int = 3, slices: int = 16, size: int = 96,
                extra_series: bool = True) -> tuple[list[Path], str]:
    """One small synthetic head CT study with hemorrhage from ichvol's synth (DICOM files, StudyInstanceUID),
    written once per base_dir and reused (pass tmp_path_factory.getbasetemp() to share it in a session)."""
    from ichvol.synth import SynthOptions, write_dataset

    out = base_dir / f"synth-{seed}-{slices}-{size}-{int(extra_series)}"
    done = out / "COMPLETE"
    if not done.exists():
        options = SynthOptions(slices=slices, size=size, p_no_hemorrhage=0.0, allow_tilt=False,
                               non_target_series=extra_series)
        write_dataset(out, 1, seed, ("dicom",), options)
        done.touch()
    files = sorted((out / "dicom").rglob("*.dcm"))
    return files, str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
