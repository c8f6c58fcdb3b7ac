"""The retention sweep: removes the spool files and result folders of studies older than retention.days
that have nothing left to do, one study per transaction, and records each removal in the audit trail."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from ..config import Config
from ..db.retention import expired_study_ids, lock_expired_study, mark_purged

log = logging.getLogger(__name__)

DAY_SECONDS = 86400.0


def purge_expired(config: Config, sessions: sessionmaker[Session], now: float | None = None) -> int:
    """One sweep; returns the number of studies whose files were removed. Files go before the rows are
    marked: a crash in between leaves rows that the next sweep finds again (removing is idempotent)."""
    days = config.retention.days
    if days <= 0:
        return 0
    now = time.time() if now is None else now
    cutoff = now - days * DAY_SECONDS
    with sessions.begin() as session:
        candidates = expired_study_ids(session, cutoff)
    purged = 0
    for study_id in candidates:
        with sessions.begin() as session:
            files = lock_expired_study(session, study_id, cutoff)
            if files is None:
                continue
            for relative in files.spool_paths:
                (config.spool_dir / relative).unlink(missing_ok=True)
            for folder in files.result_dirs:
                _remove_result_folder(Path(folder), config.results_dir)
            mark_purged(session, files, now, days)
        purged += 1
        log.info("retention: removed %d instance file(s) and %d result folder(s) of study %s",
                 len(files.spool_paths), len(files.result_dirs), files.study_uid)
    return purged


def _remove_result_folder(folder: Path, results_dir: Path) -> None:
    if not folder.resolve().is_relative_to(results_dir.resolve()):
        log.error("retention: result folder %s is outside %s; left in place", folder, results_dir)
        return
    shutil.rmtree(folder, ignore_errors=True)


def run_retention(config: Config, sessions: sessionmaker[Session], stop: threading.Event) -> None:
    """Sweep at start, then every retention.sweep_interval_seconds, until `stop`."""
    log.info("retention: files of finished studies are removed after %g day(s)", config.retention.days)
    while True:
        try:
            purge_expired(config, sessions)
        except Exception:  # noqa: BLE001 - a database outage must not end the sweeps
            log.exception("retention sweep failed")
        if stop.wait(config.retention.sweep_interval_seconds):
            return
