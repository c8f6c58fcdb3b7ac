"""A second stage-2 network beside the shipped one (`stage2_types.pt`): it settles types
(`cascade.type_ensemble_types`) and may add blood of some types (`cascade.type_network_adds_types`).

A stage 2 fine-tuned toward the types the shipped one confuses or misses (subarachnoid blood typed ventricular, or
not found) types them better but, trained on synthetic data, finds the hemorrhage itself less reliably on real CT,
subdural films above all. Kept beside the shipped stage 2, it is asked about its types only: the shipped stage 2
still decides everything else, and what the type network adds must lie where stage 1 saw hemorrhage and touch
what stage 2 found.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from ichvol.errors import ConfigError, InputError

from .card import write_model_card
from .config import ModelConfig
from .folder import TRAINING_FILE, TYPE_NETWORK, read_config, read_weights, stage_network, write_config, write_weights


@dataclasses.dataclass(frozen=True)
class TypeNetworkUse:
    """What the type network is asked: the types it settles, those it may add and the stage-1 support it needs to."""

    types: tuple[str, ...]
    adds: tuple[str, ...] | None = None
    min_stage1_support: float = 0.0


def add_type_network(base: Path, donor: Path, use: TypeNetworkUse, out: Path) -> Path:
    """Writes `out`: a copy of the `base` model folder with `donor`'s stage 2 as its type network, used as `use`
    says; returns `out`."""
    base, donor, out = Path(base), Path(donor), Path(out)
    if out.exists():
        raise InputError(f"{out} exists; write the model into a new folder")
    config = _with_use(read_config(base), use)
    weights = read_weights(donor, 2, stage_network(config, 2))  # ModelError when the donor's stage 2 is another
    donor_config = read_config(donor)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("checkpoints"))
    write_config(out, config)
    write_weights(out, TYPE_NETWORK, weights)
    path = out / TRAINING_FILE
    training = json.loads(path.read_text()) if path.is_file() else {}
    training["type_network"] = {"types": list(use.types), "adds": None if use.adds is None else list(use.adds),
                                "min_stage1_support": use.min_stage1_support, "from": str(donor),
                                "model": f"{donor_config.name} {donor_config.version}"}
    path.write_text(json.dumps(training, indent=2) + "\n")
    write_model_card(out, config)
    return out


def _with_use(config: ModelConfig, use: TypeNetworkUse) -> ModelConfig:
    try:
        cascade = dataclasses.replace(config.cascade, type_ensemble_types=tuple(use.types),
                                      type_network_adds_types=use.adds,
                                      type_network_min_stage1_support=use.min_stage1_support)
    except ValueError as exc:  # an unknown type, too few, types the rules tell apart, a support beyond 0-1
        raise ConfigError(str(exc)) from exc
    return dataclasses.replace(config, cascade=cascade)
