"""A model folder: config.json, labels.json, stage1.pt, stage2.pt, training.json, metrics.csv, MODEL_CARD.md.

Loading checks that the weights fit the architecture the config describes and refuses the folder otherwise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ichvol.errors import ConfigError, ModelError
from ichvol.labels import Hemorrhage

from .config import ModelConfig
from .network import build_network

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
TRAINING_FILE = "training.json"
STAGES = (1, 2)


def weights_file(stage: int) -> str:
    return f"stage{stage}.pt"


def label_map() -> dict[str, str]:
    return {"0": "background", **{str(int(h)): h.name for h in Hemorrhage}}


def write_config(folder: Path, config: ModelConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(config.to_json() + "\n")
    (folder / LABELS_FILE).write_text(json.dumps(label_map(), indent=2) + "\n")


def write_weights(folder: Path, stage: int, state_dict: dict) -> None:
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, folder / weights_file(stage))


def read_config(folder: Path) -> ModelConfig:
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such model folder")
    if not (folder / CONFIG_FILE).is_file():
        raise ModelError(f"{folder}: not a model folder (no {CONFIG_FILE})")
    try:
        return ModelConfig.from_file(folder / CONFIG_FILE)
    except ConfigError as exc:
        raise ModelError(f"{folder}: invalid {CONFIG_FILE}: {exc}") from exc


def stage_network(config: ModelConfig, stage: int) -> torch.nn.Module:
    """One stage's network as the config describes it (untrained)."""
    return build_network(config.stage(stage), config.in_channels, config.num_classes)


def load_networks(folder: Path, config: ModelConfig, device: torch.device) -> dict[int, torch.nn.Module]:
    """Both stage networks with their weights, in eval mode; ModelError when a file is missing or the weights
    do not match the config (missing/unexpected keys, other shapes)."""
    return {stage: load_network(folder, config, stage, device) for stage in STAGES}


def load_network(folder: Path, config: ModelConfig, stage: int, device: torch.device) -> torch.nn.Module:
    """One stage's network with its weights from `folder`, in eval mode."""
    network = stage_network(config, stage)
    network.load_state_dict(read_weights(Path(folder), stage, network))
    return network.to(device).eval()


def read_weights(folder: Path, stage: int, network: torch.nn.Module) -> dict:
    """One stage's weights from a model folder, checked against `network`'s architecture."""
    path = Path(folder) / weights_file(stage)
    if not path.is_file():
        raise ModelError(f"{folder}: missing weights {path.name}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt file
        raise ModelError(f"{path}: cannot read weights ({exc})") from exc
    check_weights(network, state, f"{path} (stage {stage})")
    return state


def check_weights(network: torch.nn.Module, state: dict, what: str) -> None:
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: weights {tuple(state[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensors of another shape (e.g. {wrong[0]})")
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        raise ModelError(f"{what}: weights do not match the architecture in config.json: {'; '.join(parts)}")
