"""A model folder: config.json, labels.json, stage1.pt, stage2.pt, training.json, metrics.csv, MODEL_CARD.md, and
stage2_types.pt when the config uses a second stage-2 network (`cascade.type_ensemble_types`,
`cascade.type_network_adds_types`).

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
TYPE_NETWORK = "stage2_types"  # the key of the second stage-2 network in `load_networks`, and its file's stem


def weights_file(stage: int | str) -> str:
    """`stage1.pt`, `stage2.pt`, or `stage2_types.pt` for TYPE_NETWORK."""
    return f"{stage}.pt" if stage == TYPE_NETWORK else f"stage{stage}.pt"


def network_stage(key: int | str) -> int:
    """The stage whose architecture the network of `key` has (the type network is a stage-2 network)."""
    return 2 if key == TYPE_NETWORK else int(key)


def label_map() -> dict[str, str]:
    return {"0": "background", **{str(int(h)): h.name for h in Hemorrhage}}


def write_config(folder: Path, config: ModelConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(config.to_json() + "\n")
    (folder / LABELS_FILE).write_text(json.dumps(label_map(), indent=2) + "\n")


def write_weights(folder: Path, stage: int | str, state_dict: dict) -> None:
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


def network_keys(config: ModelConfig) -> tuple[int | str, ...]:
    """The networks a model of `config` holds: both stages, and the type network when the config uses one."""
    return STAGES + ((TYPE_NETWORK,) if config.cascade.uses_type_network else ())


def load_networks(folder: Path, config: ModelConfig, device: torch.device) -> dict[int | str, torch.nn.Module]:
    """Both stage networks (and the type network, when the config uses one) with their weights, in eval mode;
    ModelError when a file is missing or the weights do not match the config (missing/unexpected keys, other
    shapes)."""
    return {key: load_network(folder, config, key, device) for key in network_keys(config)}


def load_network(folder: Path, config: ModelConfig, stage: int | str, device: torch.device) -> torch.nn.Module:
    """One network (a stage, or TYPE_NETWORK) with its weights from `folder`, in eval mode."""
    network = stage_network(config, network_stage(stage))
    network.load_state_dict(read_weights(Path(folder), stage, network))
    return network.to(device).eval()


def read_weights(folder: Path, stage: int | str, network: torch.nn.Module) -> dict:
    """One network's weights (a stage, or TYPE_NETWORK) from a model folder, checked against `network`'s
    architecture."""
    path = Path(folder) / weights_file(stage)
    if not path.is_file():
        raise ModelError(f"{folder}: missing weights {path.name}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt file
        raise ModelError(f"{path}: cannot read weights ({exc})") from exc
    what = "the type network" if stage == TYPE_NETWORK else f"stage {stage}"
    check_weights(network, state, f"{path} ({what})")
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
