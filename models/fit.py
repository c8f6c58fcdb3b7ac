"""`ichvol train`: build the model folder, cache the data, train the requested stages."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ichvol.errors import ConfigError, InputError

from .card import write_model_card
from .config import ModelConfig
from .data import cache_items, find_cases, split_cases
from .folder import (
    CONFIG_FILE,
    TRAINING_FILE,
    TYPE_NETWORK,
    load_network,
    network_keys,
    network_stage,
    read_config,
    read_weights,
    stage_network,
    weights_file,
    write_config,
    write_weights,
)
from .predictor import resolve_device
from .train import METRICS_FILE, EpochResult, StageTrainer, checkpoint_path, truncate_metrics
from .validation import CascadeValidator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    data_dir: Path
    out: Path
    config: ModelConfig | None  # None: the folder's own config.json (resume) or the "small" config
    stages: tuple[int, ...] = (1, 2)
    epochs: int | None = None
    device: str = "auto"
    resume: bool = False
    init_from: Path | None = None  # fine-tune: start each stage from this model folder's weights
    # A separate validation set (every case of data_dir then trains); None: a seeded share of data_dir.
    val_data_dir: Path | None = None


@dataclass
class TrainCallbacks:
    on_stage: Callable[[int, int, int], None] | None = None  # stage, first epoch, last epoch
    on_iteration: Callable[[int, int, float], None] | None = None  # epoch, iteration, running loss
    on_epoch: Callable[[EpochResult], None] | None = None


def train_model(request: TrainRequest, callbacks: TrainCallbacks | None = None) -> ModelConfig:
    callbacks = callbacks or TrainCallbacks()
    out = Path(request.out)
    config = _effective_config(request)
    if TYPE_NETWORK in network_keys(config) and request.init_from is None:
        raise ConfigError("cascade.type_ensemble_types or type_network_adds_types names a type network "
                          "(stage2_types.pt) that training does not "
                          "make: fine-tune with --init-from a model that has one, or train without the setting and "
                          "add one with `ichvol type-network`")
    device = resolve_device(request.device)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    validation_folder = _validation_folder(request)
    train_cases, val_cases = _training_and_validation_cases(request.data_dir, validation_folder, config)
    write_config(out, config)
    info = _read_training_info(out)
    info["data"] = _describe_data(request.data_dir, train_cases, val_cases, validation_folder)
    info["device"] = str(device)
    if request.init_from is not None:
        for key in (k for k in network_keys(config) if k not in request.stages):
            if _carry_weights(request.init_from, out, key, config):
                info.setdefault("unchanged_from", {})[Path(weights_file(key)).stem] = str(request.init_from)
    for stage in request.stages:
        validator = _cascade_validator(config, stage, request.stages, out, val_cases, device)
        trainer = StageTrainer(config, stage, out, device, validator)
        if request.resume and trainer.resume():
            truncate_metrics(out / METRICS_FILE, stage, trainer.epoch)
        elif checkpoint_path(out, stage).is_file():
            raise InputError(f"{out} already holds a stage {stage} checkpoint: pass --resume to continue it "
                             "or choose another --out")
        elif request.init_from is not None:
            trainer.start_from(request.init_from)
            info.setdefault("initialised_from", {})[f"stage{stage}"] = str(request.init_from)
        if trainer.epoch >= config.training.epochs:
            log.info("stage %d already trained for %d epochs", stage, trainer.epoch)
            continue
        started = time.perf_counter()
        seed = config.training.seed + 1000 * stage
        train_items = cache_items(train_cases, config, stage, seed)
        val_items = cache_items(val_cases, config, stage, seed + 1)
        log.info("stage %d: %d training items, %d validation items cached in %.1f s", stage, len(train_items),
                 len(val_items), time.perf_counter() - started)
        if callbacks.on_stage:
            callbacks.on_stage(stage, trainer.epoch + 1, config.training.epochs)
        trainer.fit(train_items, val_items, config.training.epochs, callbacks.on_iteration, callbacks.on_epoch)
        info.setdefault("epochs", {})[f"stage{stage}"] = trainer.epoch
        info.setdefault("seconds", {})[f"stage{stage}"] = round(
            info.get("seconds", {}).get(f"stage{stage}", 0.0) + time.perf_counter() - started, 1)
        (out / TRAINING_FILE).write_text(json.dumps(info, indent=2) + "\n")
    (out / TRAINING_FILE).write_text(json.dumps(info, indent=2) + "\n")
    write_model_card(out, config)
    return config


def _cascade_validator(config: ModelConfig, stage: int, stages: tuple[int, ...], out: Path, val_cases: list,
                       device: torch.device) -> CascadeValidator | None:
    """The cascade validation of `stage`, when the config asks for it and the other stage's weights are fixed:
    already in `out` and not trained later in this run."""
    if config.training.cascade_validation_every <= 0 or not val_cases:
        return None
    other = 2 if stage == 1 else 1
    if other in stages[stages.index(stage) + 1:] or not (out / weights_file(other)).is_file():
        log.info("stage %d: no fixed stage %d weights yet; its own validation Dice chooses its kept weights",
                 stage, other)
        return None
    validator = CascadeValidator(config, val_cases, other, load_network(out, config, other, device))
    if not validator.holds_hemorrhage:
        log.warning("stage %d: no validation case holds hemorrhage, so the cascade's DSC cannot choose; its own "
                    "validation Dice does", stage)
        return None
    log.info("stage %d: the cascade's DSC on %d validation cases chooses the kept weights, every %d epochs",
             stage, len(val_cases), config.training.cascade_validation_every)
    return validator


def _carry_weights(source: Path, out: Path, stage: int | str, config: ModelConfig) -> bool:
    """Fine-tuning: the weights of a network not trained here (the other stage, the type network) come unchanged
    from the --init-from folder (checked against this config), so that the output is a whole model. False when
    `out` already has them."""
    if (out / weights_file(stage)).is_file():
        return False
    write_weights(out, stage, read_weights(Path(source), stage, stage_network(config, network_stage(stage))))
    log.info("%s: weights taken unchanged from %s", Path(weights_file(stage)).stem, source)
    return True


def _validation_folder(request: TrainRequest) -> Path | None:
    """--val-data, or on --resume the separate validation folder the run started with."""
    if request.val_data_dir is not None or not request.resume:
        return request.val_data_dir
    recorded = _read_training_info(Path(request.out)).get("data", {}).get("validation_path")
    return Path(recorded) if recorded else None


def _training_and_validation_cases(data_dir: Path, validation: Path | None,
                                   config: ModelConfig) -> tuple[list, list]:
    cases = find_cases(data_dir)
    if validation is None:
        return split_cases(cases, config.training.validation_fraction, config.training.seed)
    if Path(validation).resolve() == Path(data_dir).resolve():
        raise InputError("--val-data must be another folder than --data: a model is not validated on the cases "
                         "it trains on")
    return cases, find_cases(validation)


def _effective_config(request: TrainRequest) -> ModelConfig:
    from .config import load_config

    out = Path(request.out)
    existing = read_config(out) if (out / CONFIG_FILE).is_file() else None
    if request.resume and existing is not None:
        if request.config is not None and request.config.to_dict() != existing.to_dict():
            differs = request.config.with_training(epochs=existing.training.epochs).to_dict() != existing.to_dict()
            if differs:
                raise ConfigError(f"{out}/{CONFIG_FILE} differs from --config: a resumed run keeps its config")
        config = existing
    else:
        config = request.config or load_config("small")
    if request.epochs is not None:
        if request.epochs < 1:
            raise InputError("--epochs must be at least 1")
        config = config.with_training(epochs=request.epochs)
    return config


def _read_training_info(out: Path) -> dict:
    path = out / TRAINING_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _describe_data(data_dir: Path, train_cases, val_cases, validation_folder: Path | None) -> dict:
    description = {
        "path": str(data_dir),
        "n_train": len(train_cases),
        "n_validation": len(val_cases),
        "validation_cases": [c.case_id for c in val_cases],
        "source": (list(train_cases) + list(val_cases))[0].layout,
    }
    if validation_folder is not None:
        description["validation_path"] = str(validation_folder)
    # `ichvol synth` describes what it generated in dataset.json; keep its provenance with the model.
    dataset_json = Path(data_dir) / "dataset.json"
    if dataset_json.is_file():
        try:
            meta = json.loads(dataset_json.read_text())
        except json.JSONDecodeError:
            meta = {}
        description["source"] = "synthetic (ichvol synth)" if meta.get("synthetic", True) else "dataset.json"
        description["dataset"] = {k: v for k, v in meta.items() if k != "cases"} if isinstance(meta, dict) else {}
    return description
