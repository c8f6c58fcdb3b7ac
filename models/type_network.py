"""A second stage-2 network that only settles types (`cascade.type_ensemble_types`).

A stage 2 fine-tuned toward the types the shipped one confuses (subarachnoid blood typed ventricular, say) types
them better but, trained on synthetic data, finds the hemorrhage itself less reliably on real CT. Kept beside the
shipped stage 2 as `stage2_types.pt`, it is asked about types only: the shipped stage 2 still decides which voxels
are hemorrhage, so the mask and its volume stay the shipped model's.
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


def add_type_network(base: Path, donor: Path, types: tuple[str, ...], out: Path) -> Path:
    """Writes `out`: a copy of the `base` model folder that settles `types` with `donor`'s stage 2 as its type
    network (`cascade.type_ensemble_types`); returns `out`."""
    base, donor, out = Path(base), Path(donor), Path(out)
    if out.exists():
        raise InputError(f"{out} exists; write the model into a new folder")
    config = _with_types(read_config(base), types)
    weights = read_weights(donor, 2, stage_network(config, 2))  # ModelError when the donor's stage 2 is another
    donor_config = read_config(donor)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("checkpoints"))
    write_config(out, config)
    write_weights(out, TYPE_NETWORK, weights)
    path = out / TRAINING_FILE
    training = json.loads(path.read_text()) if path.is_file() else {}
    training["type_network"] = {"types": list(types), "from": str(donor),
                                "model": f"{donor_config.name} {donor_config.version}"}
    path.write_text(json.dumps(training, indent=2) + "\n")
    write_model_card(out, config)
    return out


def _with_types(config: ModelConfig, types: tuple[str, ...]) -> ModelConfig:
    try:
        cascade = dataclasses.replace(config.cascade, type_ensemble_types=tuple(types))
    except ValueError as exc:  # an unknown type, too few, or types the rules tell apart
        raise ConfigError(str(exc)) from exc
    return dataclasses.replace(config, cascade=cascade)
