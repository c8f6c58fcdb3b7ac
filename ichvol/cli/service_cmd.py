"""Service commands: serve, listen, work (the PACS service), report and resubmit (its data)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..config import Config, load_config
from ..console import output_console
from ..errors import InputError

console = output_console()
log = logging.getLogger(__name__)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (defaults are embedded; ICHVOL_* variables override)."),
]
STATES = ("QUEUED", "RUNNING", "DONE", "FAILED", "REJECTED")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("listen")(listen)
    app.command("work")(work)
    app.command("report")(report)
    app.command("resubmit")(resubmit)


def _run(config: Config, listen: bool, work: bool) -> None:
    from ..service.runner import Service

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # one line per association is ours to log
    service = Service(config, listen=listen, work=work)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    parts = [p for p, on in (("listener", listen), ("worker", work)) if on]
    console.print(f"ichvol {' + '.join(parts)} running"
                  + (f" on port {service.port}" if service.port is not None else "")
                  + f", data in {config.data_dir}. Stop with Ctrl-C or SIGTERM.", highlight=False)
    while not stop.wait(0.5):
        pass
    log.info("shutting down")
    service.stop()


def serve(config: ConfigOption = None) -> None:
    """Run the listener and the worker together (one process): receive studies, segment, send results back."""
    _run(load_config(config), listen=True, work=True)


def listen(config: ConfigOption = None) -> None:
    """Run only the DICOM listener and the study-stability watcher (queues jobs in the database)."""
    _run(load_config(config), listen=True, work=False)


def work(config: ConfigOption = None) -> None:
    """Run only a worker: claim jobs from the shared database, segment, send results (outbox)."""
    _run(load_config(config), listen=False, work=True)


def _sessions(config: Config):  # noqa: ANN202
    from ..db.engine import open_database

    return open_database(config.database_url)


def report(
    key: Annotated[str | None, typer.Argument(help="Study Instance UID, accession number or patient ID.")] = None,
    since: Annotated[str | None, typer.Option(help="List jobs of the last period instead: 30m, 24h, 7d.")] = None,
    status: Annotated[str | None, typer.Option(help=f"With --since: only jobs in this state ({', '.join(STATES)}).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show a study's hemorrhage volumes, results, jobs with timings and audit trail; or list recent jobs."""
    from ..service.report import parse_since, recent_jobs, study_report

    if (key is None) == (since is None):
        raise InputError("give either a STUDY_UID / accession number / patient ID, or --since (e.g. --since 24h)")
    if status is not None and status.upper() not in STATES:
        raise InputError(f"--status: expected one of {', '.join(STATES).lower()}, got {status!r}")
    settings = load_config(config)
    since_seconds = parse_since(since) if since is not None else None
    with _sessions(settings).begin() as session:
        data = study_report(session, key) if key is not None else recent_jobs(session, since_seconds, status)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    elif key is not None:
        for study in data:
            _print_study(study)
    else:
        _print_jobs(data)


def resubmit(
    key: Annotated[str, typer.Argument(help="Study Instance UID or job id.")],
    config: ConfigOption = None,
) -> None:
    """Queue a new run of a study (with new result UIDs); the service's worker picks it up."""
    from ..db import audit
    from ..db.queue import resubmit as queue_resubmit

    with _sessions(load_config(config)).begin() as session:
        job = queue_resubmit(session, key)
        audit.record(session, "job_resubmitted", job.study_uid, job_id=job.id, key=key)
        console.print(f"study {job.study_uid}: job {job.id} (run {job.run_number}) queued", highlight=False)


def _print_study(study: dict) -> None:
    console.rule(f"Study {study['study_uid']}")
    removed = study["instances_removed_by_retention"]
    console.print(f"accession {study['accession_number'] or '-'}, {study['instances']} instances"
                  + (f" ({removed} removed under the retention policy)" if removed else "")
                  + f", first received {study['first_received']}, last {study['last_received']}", highlight=False)
    for job in study["jobs"]:
        _print_job(job)
    trail = Table(title="Audit trail", show_lines=False)
    for column in ("time", "event", "details"):
        trail.add_column(column)
    for event in study["audit"]:
        trail.add_row(event["time"], event["event"], json.dumps(event["details"], separators=(",", ":"))[:200])
    console.print(trail)


def _print_job(job: dict) -> None:
    console.print(f"\n[bold]Job {job['job_id']}[/] run {job['run']}: [bold]{job['state']}[/] "
                  f"(attempts {job['attempts']})" + (f" - {job['error_code']}: {job['error']}" if job["error"] else ""))
    result = job["result"]
    if result:
        volumes = Table(title=f"Hemorrhage: {result.get('classification', '?')}")
        for column in ("type", "volume ml", "ABC/2 ml", "ABC/2 Kothari ml", "lesions"):
            volumes.add_column(column, justify="right" if column != "type" else "left")
        for name, m in result.get("per_type", {}).items():
            volumes.add_row(name, f"{m['volume_ml']:.2f}", f"{m['abc2_ml']:.2f}", f"{m['abc2_kothari_ml']:.2f}",
                            str(len(m["lesions"])))
        volumes.add_row("total", f"{result['total_ml']:.2f}", f"{result['total_abc2_ml']:.2f}",
                        f"{result['total_abc2_kothari_ml']:.2f}", "", style="bold")
        console.print(volumes)
    timings = job["timings"]
    console.print("  ".join(f"{k}: {v}" for k, v in timings.items() if k != "seconds_after_stable" and v),
                  highlight=False)
    uids = job["uids"]
    console.print(f"SEG {uids['seg_sop_instance']} (series {uids['seg_series']})\n"
                  f"SR  {uids['sr_sop_instance']} (series {uids['sr_series']})", highlight=False)
    if job["sends"]:
        sends = Table(title="Sent")
        for column in ("object", "destination", "state", "attempts", "status", "sent", "error"):
            sends.add_column(column)
        for s in job["sends"]:
            sends.add_row(s["object"], s["destination"], s["state"], str(s["attempts"]), s["status"] or "",
                          s["sent"] or "", s["error"] or "")
        console.print(sends)


def _print_jobs(rows: list[dict]) -> None:
    table = Table(title=f"{len(rows)} jobs")
    for column in ("job", "study", "accession", "run", "state", "classification", "total ml", "stable", "error"):
        table.add_column(column)
    for row in rows:
        result = row["result"] or {}
        table.add_row(str(row["job_id"]), row["study_uid"], row["accession_number"] or "", str(row["run"]),
                      row["state"], result.get("classification", ""),
                      f"{result['total_ml']:.2f}" if "total_ml" in result else "",
                      row["timings"]["stable"] or "", (row["error"] or "")[:80])
    console.print(table)
