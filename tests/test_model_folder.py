"""Model folders: written by training, refused when the weights do not fit the config."""

import json
import os
import subprocess
import sys

import pytest
from model_phantoms import TINY_CONFIG, one_torch_thread  # noqa: F401

from ichvol.errors import ModelError
from ichvol.models import default_model_path
from ichvol.models.config import ModelConfig
from ichvol.models.folder import read_config, write_config, write_weights
from ichvol.models.network import build_network
from ichvol.models.predictor import CascadePredictor


def _folder(tmp_path, weights_config: dict | None = None):
    config = ModelConfig.from_dict(TINY_CONFIG)
    source = ModelConfig.from_dict(weights_config) if weights_config else config
    folder = tmp_path / "model"
    write_config(folder, config)
    for stage, stage_config in ((1, source.stage1), (2, source.stage2)):
        write_weights(folder, stage, build_network(stage_config, source.in_channels, source.num_classes).state_dict())
    return folder


def test_matching_folder_loads(tmp_path):
    predictor = CascadePredictor.from_folder(_folder(tmp_path), device="cpu")
    assert predictor.algorithm.name == "ichvol-test-tiny" and predictor.algorithm.version == "0.0.1"


def test_weights_of_another_width_are_refused(tmp_path):
    wider = json.loads(json.dumps(TINY_CONFIG))
    wider["stage2"]["filters"] = [6, 8, 8]
    with pytest.raises(ModelError, match=r"stage2\.pt \(stage 2\): weights do not match .*another shape"):
        CascadePredictor.from_folder(_folder(tmp_path, wider), device="cpu")


def test_weights_of_another_depth_are_refused(tmp_path):
    deeper = json.loads(json.dumps(TINY_CONFIG))
    deeper["stage1"].update(filters=[4, 8, 8, 8], strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 2]])
    with pytest.raises(ModelError, match="unexpected tensors"):
        CascadePredictor.from_folder(_folder(tmp_path, deeper), device="cpu")


def test_missing_weights_and_missing_folder_are_model_errors(tmp_path):
    folder = _folder(tmp_path)
    (folder / "stage2.pt").unlink()
    with pytest.raises(ModelError, match="missing weights stage2.pt"):
        CascadePredictor.from_folder(folder, device="cpu")
    with pytest.raises(ModelError, match="no such model folder"):
        read_config(tmp_path / "nowhere")


def test_corrupt_weights_file_is_a_model_error(tmp_path):
    folder = _folder(tmp_path)
    (folder / "stage1.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read weights"):
        CascadePredictor.from_folder(folder, device="cpu")


def test_cli_reports_a_mismatched_model_without_traceback(tmp_path):
    wider = json.loads(json.dumps(TINY_CONFIG))
    wider["stage1"]["filters"] = [4, 8, 12]
    folder = _folder(tmp_path, wider)
    image = tmp_path / "image.nii.gz"
    from model_phantoms import geometry, head

    from ichvol.nifti import write_volume

    hu, _ = head((10, 64, 64))
    write_volume(image, hu, geometry((10, 64, 64)))
    result = subprocess.run([sys.executable, "-m", "ichvol", "predict", str(image), "--out", str(tmp_path / "o"),
                             "--model", str(folder)], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    assert "weights do not match" in result.stderr and "Traceback" not in result.stderr


def test_shipped_model_folder_is_complete_and_small():
    folder = default_model_path()
    if not folder.is_dir():
        pytest.skip("the shipped model has not been trained into models/zoo yet")
    for name in ("config.json", "labels.json", "stage1.pt", "stage2.pt", "metrics.csv", "MODEL_CARD.md"):
        assert (folder / name).is_file(), name
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 30 * 2**20
    assert "NOT FOR CLINICAL USE" in (folder / "MODEL_CARD.md").read_text()
    CascadePredictor.from_folder(folder, device="cpu")  # weights match the config


def test_model_card_reports_the_epochs_training_kept(tmp_path):
    from ichvol.models.card import write_model_card

    folder = _folder(tmp_path)
    rows = [  # stage, epoch, loss, val Dice (types), val Dice (foreground)
        (1, 1, 2.0, 0.30, 0.50), (1, 2, 1.9, 0.10, 0.70),  # stage 1 keeps foreground: 2
        (2, 1, 2.0, 0.40, 0.40), (2, 2, 1.9, 0.10, 0.80),  # stage 2 keeps the mean: 2
        (2, 3, 1.8, 0.50, 0.20),
    ]
    _write_metrics(folder, [dict(zip(("stage", "epoch", "train_loss", "val_dice", "val_dice_foreground"), row,
                                     strict=True)) for row in rows])
    card = write_model_card(folder, read_config(folder)).read_text()
    assert "Stage 1: 2 epochs; best by the training's selection rule at epoch 2" in card
    assert "Stage 2: 3 epochs; best by the training's selection rule at epoch 2" in card


def test_model_card_reports_the_cascade_validation_that_chose_the_weights(tmp_path):
    from ichvol.models.card import write_model_card

    folder = _folder(tmp_path)
    _write_metrics(folder, [  # a fine-tuning: epoch 0 is the starting weights; the cascade ran at 0, 2 and 3
        {"stage": 2, "epoch": 0, "val_dice": 0.5, "val_dice_foreground": 0.5, "val_cascade_dsc": 0.70,
         "val_cascade_false_positive_ml": 2.0},
        {"stage": 2, "epoch": 1, "train_loss": 1.0, "val_dice": 0.9, "val_dice_foreground": 0.9},
        {"stage": 2, "epoch": 2, "train_loss": 0.9, "val_dice": 0.4, "val_dice_foreground": 0.4,
         "val_cascade_dsc": 0.75, "val_cascade_false_positive_ml": 1.5},
        {"stage": 2, "epoch": 3, "train_loss": 0.8, "val_dice": 0.6, "val_dice_foreground": 0.6,
         "val_cascade_dsc": 0.72, "val_cascade_false_positive_ml": 0.5},
    ])
    card = write_model_card(folder, read_config(folder)).read_text()
    assert ("Stage 2: 3 epochs; best by the training's selection rule at epoch 2: validation Dice 0.4 (foreground "
            "0.4); the whole cascade on the validation cases, which chose it: DSC 0.75, 1.5 ml found in "
            "hemorrhage-free cases.") in card


def _write_metrics(folder, rows):
    from ichvol.models.train import METRIC_COLUMNS

    lines = [",".join(METRIC_COLUMNS)] + [",".join(str(row.get(c, "nan")) for c in METRIC_COLUMNS) for row in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_model_card_lists_the_evaluations_with_short_lists_inline(tmp_path):
    from ichvol.models.card import EVALUATION_FILE, write_model_card

    folder = _folder(tmp_path)
    (folder / EVALUATION_FILE).write_text(json.dumps({"real CT": {
        "dsc_mean": 0.81234, "shape_zyx": [28, 512, 512], "groups": [{"group": "SAH", "n_cases": 2}]}}))
    card = write_model_card(folder, read_config(folder)).read_text()
    assert "### real CT\n- dsc_mean: 0.8123\n- shape_zyx: [28, 512, 512]\n- groups: \n  - group SAH, n_cases 2" in card


def _stage_weights(folder, stage: int) -> dict:
    import torch

    from ichvol.models.folder import weights_file

    return torch.load(folder / weights_file(stage), map_location="cpu", weights_only=True)


def test_blend_mixes_one_stage_of_two_folders_and_keeps_the_other_stage(tmp_path):
    import torch

    from ichvol.models.blend import blend_stage

    torch.manual_seed(1)
    tuned, base = _folder(tmp_path / "tuned"), _folder(tmp_path / "base")
    out = blend_stage(tuned, base, 2, 0.7, tmp_path / "blended")
    a, b, mixed = _stage_weights(tuned, 2), _stage_weights(base, 2), _stage_weights(out, 2)
    floats = [k for k, v in a.items() if v.is_floating_point() and not torch.equal(v, b[k])]
    assert floats  # two random initialisations differ
    for key in floats:
        assert torch.allclose(mixed[key], 0.7 * a[key] + 0.3 * b[key], atol=1e-6)
    assert all(torch.equal(v, _stage_weights(tuned, 1)[k]) for k, v in _stage_weights(out, 1).items())
    assert json.loads((out / "training.json").read_text())["blended"][0]["alpha"] == 0.7
    CascadePredictor.from_folder(out, device="cpu")  # a whole, loadable model


def test_blend_refuses_another_network_and_a_bad_alpha(tmp_path):
    from ichvol.errors import InputError
    from ichvol.models.blend import blend_stage

    wider = json.loads(json.dumps(TINY_CONFIG))
    wider["stage2"]["filters"] = [f * 2 for f in wider["stage2"]["filters"]]
    tuned, other = _folder(tmp_path / "tuned"), _folder(tmp_path / "other", wider)
    with pytest.raises(ModelError, match="do not match"):
        blend_stage(tuned, other, 2, 0.5, tmp_path / "o1")
    with pytest.raises(InputError, match="alpha"):
        blend_stage(tuned, tuned, 2, 1.5, tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_blend_cli(tmp_path):
    tuned, base = _folder(tmp_path / "tuned"), _folder(tmp_path / "base")
    run = subprocess.run([sys.executable, "-m", "ichvol", "blend", str(tuned), str(base), "--out",
                          str(tmp_path / "b"), "--alpha", "0.5"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "b" / "stage2.pt").is_file()
    again = subprocess.run([sys.executable, "-m", "ichvol", "blend", str(tuned), str(base), "--out",
                            str(tmp_path / "b")], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.parametrize("cascade, expected", [
    ({"stage1_type_prior": False}, "Hemorrhage type of a voxel: stage 2's most probable type."),
    ({"stage1_type_prior": True}, "Hemorrhage type of a voxel: the type both stages agree on most"),
    ({"stage1_type_prior": True, "stage1_type_prior_types": ["SDH", "EDH"], "retype_detached_extra_axial": True},
     "between SDH and EDH the one both stages agree on most (stage 1 sees the whole collection); a subdural or "
     "epidural region that touches no bone takes the type around it."),
    ({"stage1_type_prior": True, "stage1_type_prior_types": ["SDH", "EDH"], "stage1_type_split_types": ["IPH", "IVH"],
      "stage1_type_split_exponent": 0.1},
     "(stage 1 sees the whole collection); a voxel typed IPH or IVH takes the one of them with most stage 2 x "
     "stage 1 ** 0.1 (stage 1 sees where in the head the blood lies)."),
])
def test_model_card_says_how_a_voxel_is_typed(tmp_path, cascade, expected):
    from ichvol.models.card import write_model_card

    config = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {**TINY_CONFIG["cascade"], **cascade}})
    write_config(tmp_path, config)
    assert expected in write_model_card(tmp_path, config).read_text()


def test_model_card_states_the_one_sided_exception_only_when_it_is_on(tmp_path):
    from ichvol.models.card import write_model_card

    rules = {"min_film_depth_fraction": 0.15, "min_stage1_support_near_bone": 0.3}
    sentence = "HU brighter beside it than across the head"
    for extra, present in (({}, False), ({"min_side_contrast_hu": 8.0}, True)):
        config = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {**TINY_CONFIG["cascade"], **rules, **extra}})
        write_config(tmp_path, config)
        card = write_model_card(tmp_path, config).read_text()
        assert (sentence in card) == present
    assert "at least 8 HU brighter" in card and "(0.5 ml or more)" in card


def test_model_card_states_the_head_sweep_and_the_windows_per_pass(tmp_path):
    from ichvol.models.card import write_model_card

    sentence = "Stage 2 also sweeps the whole head crop"
    for extra, present in (({}, False), ({"head_sweep": True, "sliding_window_batch_size": 4}, True)):
        config = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {**TINY_CONFIG["cascade"], **extra}})
        write_config(tmp_path, config)
        card = write_model_card(tmp_path, config).read_text()
        assert (sentence in card) == present
    assert "4 window(s) per forward pass" in card
