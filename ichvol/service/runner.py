"""Running the service: the listener (with the stability watcher), worker(s) and the outbox sender as
threads of one process, started and stopped together. `serve` runs all; `listen` and `work` run halves."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from ..config import Config
from ..db.engine import open_database
from ..errors import ModelError
from .pipeline import Segmenter

log = logging.getLogger(__name__)


def load_segmenter(config: Config) -> Segmenter:
    """The model the worker runs, loaded once: worker.model or the model shipped with ichvol."""
    from ..models import default_model_path
    from ..models.predictor import CascadePredictor

    path = Path(config.worker.model) if config.worker.model else default_model_path()
    if not path.is_dir():
        raise ModelError(f"worker.model: no model folder at {path}")
    if config.worker.torch_threads:
        import torch

        torch.set_num_threads(config.worker.torch_threads)
    return CascadePredictor.from_folder(path, config.worker.device)


class Service:
    def __init__(self, config: Config, listen: bool = True, work: bool = True, segmenter: Segmenter | None = None):
        self.config = config
        self.listen = listen
        self.work = work
        self.segmenter = segmenter
        self.stop_event = threading.Event()
        self.sessions: sessionmaker[Session] | None = None
        self.listener = None
        self.port: int | None = None
        self._threads: list[threading.Thread] = []
        self._owner: str | None = None

    def start(self) -> None:
        """Everything that can fail on configuration (database, model, port) fails here, before any thread."""
        from ..listener.server import Listener
        from .sender import Sender
        from .watcher import watch
        from .worker import Worker

        for folder in (self.config.data_dir, self.config.spool_dir, self.config.results_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.sessions = open_database(self.config.database_url)
        if self.work and self.segmenter is None:
            self.segmenter = load_segmenter(self.config)
        if self.listen:
            self.listener = Listener(self.config, self.sessions)
            try:
                _, self.port = self.listener.start()
            except OSError as exc:
                from ..errors import ConfigError

                raise ConfigError(f"listener.port: cannot listen on {self.config.listener.host}:"
                                  f"{self.config.listener.port}: {exc.strerror or exc}") from None
            self._spawn("watcher", watch, self.config, self.sessions, self.stop_event)
        if self.work:
            worker = Worker(self.config, self.sessions, self.segmenter)
            self._owner = worker.owner
            self._spawn("worker", worker.run, self.stop_event)
            self._spawn("sender", Sender(self.config, self.sessions, worker.owner).run, self.stop_event)
            if self.config.retention.days > 0:
                from .retention import run_retention

                self._spawn("retention", run_retention, self.config, self.sessions, self.stop_event)

    def _spawn(self, name: str, target, *args) -> None:  # noqa: ANN001
        # Daemon threads: a job running at shutdown is abandoned; its lease expires and it is run again.
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        if self.listener is not None:
            self.listener.stop()
        busy = []
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                busy.append(thread.name)
        if busy and self._owner is not None:
            from ..db.queue import release_leases

            with self.sessions.begin() as session:
                released = release_leases(session, self._owner)
            log.warning("%s still busy at shutdown: %d job(s)/send(s) handed back to the queue",
                        " and ".join(busy), released)
