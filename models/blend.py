"""Weight-space blending of one stage: a fine-tuning and the model it started from (WiSE-FT, Wortsman et al.,
CVPR 2022). Fine-tuning on synthetic data raises synthetic Dice and drifts on real CT; a point between the two
weight sets can keep most of the gain and the starting model's robustness. `alpha` 1 is the fine-tuning, 0 the
base. Both folders must hold the same network for the stage (a fine-tuning of the other does).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ichvol.errors import InputError

from .folder import TRAINING_FILE, read_config, read_weights, stage_network, write_weights


def blend_stage(fine_tuned: Path, base: Path, stage: int, alpha: float, out: Path) -> Path:
    """Writes `out`: a copy of the `fine_tuned` folder whose `stage` weights are alpha * fine_tuned +
    (1 - alpha) * base (integer buffers such as batch counters from the fine-tuning); returns `out`."""
    fine_tuned, base, out = Path(fine_tuned), Path(base), Path(out)
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must lie in [0, 1], got {alpha}")
    if out.exists():
        raise InputError(f"{out} exists; blend into a new folder")
    config, base_config = read_config(fine_tuned), read_config(base)
    network = stage_network(config, stage)
    tuned_state = read_weights(fine_tuned, stage, network)
    base_state = read_weights(base, stage, network)  # ModelError when the base's network is another one
    blended = {
        key: (alpha * value.float() + (1.0 - alpha) * base_state[key].float()).to(value.dtype)
        if value.is_floating_point() else value
        for key, value in tuned_state.items()
    }
    shutil.copytree(fine_tuned, out, ignore=shutil.ignore_patterns("checkpoints"))
    write_weights(out, stage, blended)
    _record(out, {"stage": stage, "alpha": alpha, "fine_tuned": str(fine_tuned), "base": str(base),
                  "base_model": f"{base_config.name} {base_config.version}"})
    return out


def _record(folder: Path, blend: dict) -> None:
    path = folder / TRAINING_FILE
    training = json.loads(path.read_text()) if path.is_file() else {}
    training.setdefault("blended", []).append(blend)
    path.write_text(json.dumps(training, indent=2) + "\n")
