"""MODEL_CARD.md: what a model folder was trained on, how it was trained, and figures measured on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .config import ModelConfig
from .folder import TRAINING_FILE
from .postprocess import SIDE_BAND_MM, SIDE_MIN_ML
from .train import read_metrics, selection_score

NOTES_FILE = "notes.md"  # the maintainer's notes on weaknesses, included verbatim
EVALUATION_FILE = "evaluation.json"  # figures measured by `ichvol evaluate`, copied in by the maintainer


def write_model_card(folder: Path, config: ModelConfig) -> Path:
    folder = Path(folder)
    training = _read_json(folder / TRAINING_FILE) or {}
    evaluations = _read_json(folder / EVALUATION_FILE) or {}
    data = training.get("data", {})
    lines = [
        f"# Model card: {config.name} {config.version}",
        "",
        "**NOT FOR CLINICAL USE.** A research model. It was trained on synthetic data only and has not been "
        "validated on patients; its output must not inform any diagnosis or treatment.",
        "",
        "## What it does",
        "Two-stage (coarse-to-fine) 3D UNet (MONAI DynUNet) segmenting intracranial hemorrhage on non-contrast "
        "head CT into IPH (1), IVH (2), SAH (3), SDH (4), EDH (5); 0 is background (labels.json).",
        "",
        "## Architecture and preprocessing (config.json)",
        f"- Stage 1: patch {list(config.stage1.patch_size)}, filters {list(config.stage1.filters)}, "
        f"head crop resampled in-plane to {config.stage1.in_plane_spacing_mm} mm.",
        f"- Stage 2: patch {list(config.stage2.patch_size)}, filters {list(config.stage2.filters)}, on ROIs "
        f"(stage-1 findings + {config.cascade.roi_margin_mm} mm margin) cropped at full resolution, "
        "square in-plane, resized in-plane to the patch"
        + (f" or to {config.stage2.roi_max_spacing_mm} mm pixels where the ROI is larger"
           if config.stage2.roi_max_spacing_mm else "")
        + ", slices kept."
        + (" Stage 2 also sweeps the whole head crop (square, at the pixels a ROI that large gets); what it finds "
           "outside every ROI joins the ROIs' findings before the post-processing." if config.cascade.head_sweep
           else ""),
        f"- Post-processing: hemorrhage outside the cranial cavity cleared "
        f"({'on' if config.cascade.intracranial_gate else 'off'}); components with a median HU outside "
        f"{list(config.cascade.component_median_hu) if config.cascade.component_median_hu else 'any range (off)'} "
        "dropped; "
        + (f"components against bone over which stage 1's hemorrhage probability averages under "
           f"{config.cascade.min_stage1_support_near_bone} dropped; "
           if config.cascade.min_stage1_support_near_bone > 0 else "")
        + (f"{'/'.join(config.cascade.film_types)} components against bone of which under "
           f"{config.cascade.min_film_depth_fraction:.0%} lies {config.cascade.film_depth_mm} mm or more from bone "
           "(a film along the skull's edge) dropped; "
           if config.cascade.min_film_depth_fraction > 0 else "")
        + (f"a component ({SIDE_MIN_ML:g} ml or more) that either of these would drop is kept when the band "
           f"{SIDE_BAND_MM[0]:g}-{SIDE_BAND_MM[1]:g} mm inside the inner table reads at least "
           f"{config.cascade.min_side_contrast_hu:g} HU brighter beside it than across the head; "
           if config.cascade.min_side_contrast_hu is not None else "")
        + (f"components under {config.cascade.min_component_ml} ml dropped" if config.cascade.min_component_ml > 0
           else "no minimum component volume")
        + (f"; the one-pixel in-plane rim around "
           f"{', '.join(config.cascade.rim_growth_types) if config.cascade.rim_growth_types else 'the mask'} "
           f"joins it where {list(config.cascade.rim_growth_hu)} HU" if config.cascade.rim_growth_hu else "")
        + (f"; then every voxel of {config.cascade.max_voxel_hu:g} HU or more (bone) cleared."
           if config.cascade.max_voxel_hu is not None else "."),
        f"- Input channels: HU windows {[(w.level, w.width) for w in config.preprocessing.windows]} "
        "(level, width), each clipped and mapped to [0, 1]; the wide window keeps calcification and bone "
        "apart from blood.",
        f"- Sliding window, overlap {config.cascade.sliding_window_overlap}, blend '{config.cascade.blend_mode}' "
        f"(averaged), {config.cascade.sliding_window_batch_size} window(s) per forward pass; mirror TTA "
        f"{'on' if config.cascade.mirror_tta else 'off'}.",
        "- Hemorrhage type of a voxel: " + _typing(config),
        "",
        "## Training data",
        f"- Source: {data.get('source', 'unknown')}",
        f"- Cases: {data.get('n_train', '?')} training, {data.get('n_validation', '?')} validation "
        f"(from {data.get('path', '?')}).",
    ]
    if data.get("description"):
        lines.append(f"- {data['description']}")
    lines += [
        "",
        "## Training",
        f"- Seed {config.training.seed}; AdamW lr {config.training.learning_rate}, CosineAnnealingWarmRestarts; "
        "DiceCE (batch Dice) summed over deep-supervision outputs; augmentation: rotation +-"
        f"{config.training.rotation_degrees} deg, flips, noise, smoothing, contrast.",
        f"- Device: {training.get('device', '?')}; epochs per stage: {training.get('epochs', {})}; "
        f"wall time: {training.get('seconds', {})} s.",
    ]
    if training.get("initialised_from"):
        lines.append(f"- Fine-tuned: each stage started from the weights of {training['initialised_from']}.")
    if training.get("unchanged_from"):
        lines.append(f"- Not trained here, weights taken unchanged: {training['unchanged_from']}.")
    if training.get("type_network"):
        donor = training["type_network"]
        lines.append(f"- Type network (`ichvol type-network`): the stage 2 of {donor.get('model', '?')} "
                     f"(from {donor.get('from', '?')}), settling {' and '.join(donor.get('types', []))}.")
    for blend in training.get("blended", []):
        lines.append(f"- Stage {blend['stage']} weights blended (`ichvol blend`, WiSE-FT): {blend['alpha']} x "
                     f"{blend['fine_tuned']} + {1 - blend['alpha']:g} x {blend.get('base_model', blend['base'])}.")
    lines += [
        "",
        "## Validation during training (metrics.csv)",
    ]
    lines += _best_rows(folder / "metrics.csv")
    notes = folder / NOTES_FILE
    if notes.is_file():
        lines += ["", "## Known limitations", notes.read_text().strip()]
    lines += ["", "## Evaluation (measured with `ichvol evaluate`)"]
    if evaluations:
        for name, summary in evaluations.items():
            lines.append(f"### {name}")
            lines += [f"- {key}: {_compact(value)}" for key, value in summary.items()]
    else:
        lines.append("Not evaluated yet.")
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _best_rows(path: Path) -> list[str]:
    if not path.is_file():
        return ["- no metrics recorded"]
    rows = read_metrics(path)
    out = []
    for stage in sorted({r["stage"] for r in rows}):
        stage_rows = [r for r in rows if r["stage"] == stage]
        epochs = sum(r["epoch"] != "0" for r in stage_rows)  # epoch 0: a fine-tuning's starting weights
        by_cascade = any(not math.isnan(float(r["val_cascade_dsc"])) for r in stage_rows)
        scored = [(score, r) for r in stage_rows
                  if (score := selection_score(int(stage), r, by_cascade)) is not None]
        if not scored:
            out.append(f"- Stage {stage}: {epochs} epochs; none scored.")
            continue
        best = max(scored, key=lambda pair: pair[0])[1]
        line = (f"- Stage {stage}: {epochs} epochs; best by the training's selection rule at epoch "
                f"{best['epoch']}: validation Dice {best['val_dice']} (foreground {best['val_dice_foreground']})")
        if by_cascade:
            line += f"; the whole cascade on the validation cases, which chose it: DSC {best['val_cascade_dsc']}"
            if not math.isnan(float(best["val_cascade_false_positive_ml"])):
                line += f", {best['val_cascade_false_positive_ml']} ml found in hemorrhage-free cases"
        out.append(line + ".")
    return out


def _compact(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(item, (int, float, str)) for item in value):
        return "[" + ", ".join(_compact(item) for item in value) + "]"
    if isinstance(value, list):
        return "".join(f"\n  - {_compact(item)}" for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_compact(v)}" for k, v in value.items())
    return str(value)


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _typing(config: ModelConfig) -> str:
    cascade = config.cascade
    if not cascade.stage1_type_prior:
        text = "stage 2's most probable type"
    elif cascade.stage1_type_prior_types is None:
        text = ("the type both stages agree on most (stage 2's type probabilities times stage 1's, which sees the "
                "whole head)")
    else:
        text = (f"stage 2's most probable type; between {' and '.join(cascade.stage1_type_prior_types)} the one both "
                "stages agree on most (stage 1 sees the whole collection)")
    if cascade.type_ensemble_types is not None:
        text += (f"; a voxel typed {' or '.join(cascade.type_ensemble_types)} takes the one of them with most "
                 "geometric mean of stage 2's type probabilities and those of a second stage-2 network "
                 "(stage2_types.pt)")
    if cascade.type_network_adds_types is not None:
        text += (f"; the type network may add {' or '.join(cascade.type_network_adds_types)} where stage 2 finds "
                 "none, as sure as stage 2's threshold, where stage 1's hemorrhage probability reaches "
                 f"{cascade.type_network_min_stage1_support:g}, in regions that touch what stage 2 found")
    if cascade.stage1_type_split_types is not None:  # the config refuses a split without the prior
        text += (f"; a voxel typed {' or '.join(cascade.stage1_type_split_types)} takes the one of them with most "
                 f"stage 2 x stage 1 ** {cascade.stage1_type_split_exponent:g} (stage 1 sees where in the head the "
                 "blood lies)")
    if cascade.retype_detached_extra_axial:
        text += "; a subdural or epidural region that touches no bone takes the type around it"
    return text + "."
