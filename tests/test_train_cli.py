"""`ichvol train` on four tiny synthetic cases on CPU: the model folder, exact --resume, bad input."""

import csv
import json

import pytest
import torch
from model_phantoms import ct_image, one_torch_thread, write_config, write_dataset  # noqa: F401
from typer.testing import CliRunner

from ichvol.cli import app
from ichvol.models.predictor import CascadePredictor

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    write_dataset(root / "data", n_cases=4)
    write_config(root / "tiny.json")
    return root


def _train(dataset, out, *extra):
    result = runner.invoke(app, ["train", "--data", str(dataset / "data"), "--out", str(out), "--device", "cpu",
                                 *extra])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _rows(folder):
    with (folder / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def two_epochs_stage1(dataset):
    out = dataset / "straight"
    _train(dataset, out, "--config", str(dataset / "tiny.json"), "--stage", "1", "--epochs", "2")
    return out


def test_one_epoch_both_stages_writes_a_self_describing_model(dataset):
    out = dataset / "model"
    _train(dataset, out, "--config", str(dataset / "tiny.json"), "--epochs", "1")
    for name in ("config.json", "labels.json", "training.json", "stage1.pt", "stage2.pt", "metrics.csv",
                 "MODEL_CARD.md"):
        assert (out / name).is_file(), name
    assert [(r["stage"], r["epoch"]) for r in _rows(out)] == [("1", "1"), ("2", "1")]
    training = json.loads((out / "training.json").read_text())
    assert training["data"]["n_train"] + training["data"]["n_validation"] == 4
    assert json.loads((out / "labels.json").read_text())["1"] == "IPH"
    card = (out / "MODEL_CARD.md").read_text()
    assert "NOT FOR CLINICAL USE" in card and "synthetic" in card
    # The folder is a usable model.
    image, _ = ct_image((10, 64, 64))
    prediction = CascadePredictor.from_folder(out, device="cpu").predict(image)
    assert prediction.labels.shape == image.hu.shape


def test_resume_continues_exactly(dataset, two_epochs_stage1):
    out = dataset / "resumed"
    _train(dataset, out, "--config", str(dataset / "tiny.json"), "--stage", "1", "--epochs", "1")
    _train(dataset, out, "--stage", "1", "--epochs", "2", "--resume")
    straight = torch.load(two_epochs_stage1 / "checkpoints" / "stage1_last.pt", weights_only=False)
    resumed = torch.load(out / "checkpoints" / "stage1_last.pt", weights_only=False)
    assert resumed["epoch"] == straight["epoch"] == 2
    assert all(torch.equal(straight["network"][k], resumed["network"][k]) for k in straight["network"])
    assert [r["train_loss"] for r in _rows(out)] == [r["train_loss"] for r in _rows(two_epochs_stage1)]


def test_training_into_an_existing_run_without_resume_is_refused(dataset, two_epochs_stage1):
    result = runner.invoke(app, ["train", "--data", str(dataset / "data"), "--out", str(two_epochs_stage1),
                                 "--stage", "1", "--epochs", "3", "--device", "cpu"])
    assert result.exit_code != 0 and "--resume" in str(result.exception)


def test_data_folder_without_cases_is_an_input_error(tmp_path):
    from ichvol.errors import InputError

    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m")])
    assert isinstance(result.exception, InputError) and "images/" in str(result.exception)


def test_init_from_fine_tunes_from_another_models_weights(dataset, tmp_path):
    from model_phantoms import write_untrained_model

    from ichvol.models.folder import weights_file

    start = write_untrained_model(tmp_path / "start", seed=5)
    out = tmp_path / "tuned"
    _train(dataset, out, "--config", str(dataset / "tiny.json"), "--stage", "2", "--epochs", "1",
           "--init-from", str(start))
    training = json.loads((out / "training.json").read_text())
    assert training["initialised_from"] == {"stage2": str(start)}
    assert "Fine-tuned" in (out / "MODEL_CARD.md").read_text()
    # The stage not trained comes unchanged from the starting model, so the folder is a whole model.
    assert training["unchanged_from"] == {"stage1": str(start)}
    untouched = torch.load(start / weights_file(1), weights_only=True)
    carried = torch.load(out / weights_file(1), weights_only=True)
    assert untouched.keys() == carried.keys() and all(torch.equal(untouched[k], carried[k]) for k in untouched)
    image, _ = ct_image((10, 64, 64))
    assert CascadePredictor.from_folder(out, device="cpu").predict(image).labels.shape == image.hu.shape
    # One epoch of small steps moves the weights, but they stay close to where they started, far closer than
    # to an independent initialisation.
    before = torch.load(start / weights_file(2), weights_only=True)
    after = torch.load(out / weights_file(2), weights_only=True)
    other = torch.load(write_untrained_model(tmp_path / "other", seed=9) / weights_file(2), weights_only=True)
    key = next(k for k in before if k.endswith("conv.weight"))
    assert not torch.equal(before[key], after[key])
    assert (after[key] - before[key]).norm() < 0.5 * (other[key] - before[key]).norm()


def test_fine_tuning_a_model_with_a_type_network_carries_it_and_training_one_from_scratch_is_refused(dataset,
                                                                                                    tmp_path):
    from model_phantoms import write_untrained_model

    from ichvol.models.folder import TYPE_NETWORK, weights_file
    from ichvol.models.type_network import TypeNetworkUse, add_type_network

    base = write_untrained_model(tmp_path / "base", seed=5)
    start = add_type_network(base, write_untrained_model(tmp_path / "donor", seed=6), TypeNetworkUse(("IVH", "SAH")),
                             tmp_path / "typed")
    config = write_config(tmp_path / "typed.json", cascade={"type_ensemble_types": ["IVH", "SAH"]})
    out = tmp_path / "tuned"
    _train(dataset, out, "--config", str(config), "--stage", "2", "--epochs", "1", "--init-from", str(start))
    assert json.loads((out / "training.json").read_text())["unchanged_from"] == {"stage1": str(start),
                                                                                TYPE_NETWORK: str(start)}
    before, after = (torch.load(f / weights_file(TYPE_NETWORK), weights_only=True) for f in (start, out))
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert TYPE_NETWORK in CascadePredictor.from_folder(out, device="cpu").networks
    result = runner.invoke(app, ["train", "--data", str(dataset / "data"), "--out", str(tmp_path / "scratch"),
                                 "--config", str(config), "--epochs", "1", "--device", "cpu"])
    assert result.exit_code != 0 and "ichvol type-network" in str(result.exception)


def test_init_from_refuses_another_architecture_and_resume(dataset, tmp_path):
    from model_phantoms import TINY_CONFIG, write_untrained_model

    wider = {**TINY_CONFIG, "stage2": {**TINY_CONFIG["stage2"], "filters": [8, 16, 16]}}
    start = write_untrained_model(tmp_path / "wider", wider)
    result = runner.invoke(app, ["train", "--data", str(dataset / "data"), "--out", str(tmp_path / "x"),
                                 "--config", str(dataset / "tiny.json"), "--stage", "2", "--epochs", "1",
                                 "--device", "cpu", "--init-from", str(start)])
    assert result.exit_code != 0 and "do not match the architecture" in str(result.exception)
    result = runner.invoke(app, ["train", "--data", str(dataset / "data"), "--out", str(tmp_path / "y"),
                                 "--resume", "--init-from", str(start)])
    assert result.exit_code != 0 and "pick one" in str(result.exception)


def test_separate_validation_set_trains_on_every_case_of_data_and_is_kept_on_resume(dataset, tmp_path):
    validation = tmp_path / "val"
    write_dataset(validation, n_cases=2)
    out = tmp_path / "model"
    _train(dataset, out, "--config", str(dataset / "tiny.json"), "--stage", "1", "--epochs", "1",
           "--val-data", str(validation))
    data = json.loads((out / "training.json").read_text())["data"]
    assert (data["n_train"], data["n_validation"]) == (4, 2)
    assert data["validation_path"] == str(validation)
    # A resumed run keeps validating on that folder without being told again.
    _train(dataset, out, "--stage", "1", "--epochs", "2", "--resume")
    data = json.loads((out / "training.json").read_text())["data"]
    assert (data["n_train"], data["n_validation"], data["validation_path"]) == (4, 2, str(validation))


def test_validation_on_the_training_folder_is_refused(dataset, tmp_path):
    from ichvol.errors import InputError

    result = runner.invoke(app, ["train", "--data", str(dataset / "data"), "--out", str(tmp_path / "m"),
                                 "--val-data", str(dataset / "data"), "--device", "cpu"])
    assert isinstance(result.exception, InputError) and "--val-data" in str(result.exception)


def test_cascade_validation_keeps_the_weights_with_the_best_cascade_dsc(dataset, tmp_path):
    """Stage 2 fine-tuned with the cascade validated at the start, every 2 epochs and at the last: the kept
    weights are those whose whole cascade scored best on the validation cases, as the folder reproduces."""
    from model_phantoms import constant_network, write_untrained_model

    from ichvol.models.folder import read_config, write_weights

    start = write_untrained_model(tmp_path / "start", seed=5)
    config = read_config(start)
    write_weights(start, 1, constant_network(config.stage1, config, winner=1).state_dict())  # ROI: the whole head
    validation = write_dataset(tmp_path / "val", n_cases=2)
    write_config(tmp_path / "cv.json", training={"cascade_validation_every": 2, "iterations_per_epoch": 8})
    out = tmp_path / "tuned"
    result = _train(dataset, out, "--config", str(tmp_path / "cv.json"), "--stage", "2", "--epochs", "3",
                    "--init-from", str(start), "--val-data", str(validation))
    assert "cascade DSC" in result.output
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3"]
    scored = {r["epoch"]: float(r["val_cascade_dsc"]) for r in rows if r["val_cascade_dsc"] != "nan"}
    assert sorted(scored) == ["0", "2", "3"]
    # The stage's own validation only informs here: it runs on the cascade's epochs alone.
    assert [r["epoch"] for r in rows if r["val_dice"] != "nan"] == ["0", "2", "3"]
    # `ichvol evaluate` of the output folder on the validation cases gives the best score: the kept weights.
    result = runner.invoke(app, ["evaluate", "--testset", str(validation), "--out", str(tmp_path / "eval"),
                                 "--model", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["dsc_mean"] == pytest.approx(max(scored.values()), abs=1e-5)
    assert "the whole cascade on the validation cases, which chose it" in (out / "MODEL_CARD.md").read_text()


def test_resume_of_a_run_with_the_older_metrics_columns_keeps_its_rows(dataset, tmp_path):
    out = tmp_path / "older"
    _train(dataset, out, "--config", str(dataset / "tiny.json"), "--stage", "1", "--epochs", "1")
    older = ["stage", "epoch", "train_loss", "val_dice", "val_dice_foreground", "learning_rate", "seconds"]
    first = _rows(out)[0]
    (out / "metrics.csv").write_text(",".join(older) + "\n" + ",".join(first[c] for c in older) + "\n")
    _train(dataset, out, "--stage", "1", "--epochs", "2", "--resume")
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["train_loss"] == first["train_loss"] and rows[0]["val_cascade_dsc"] == "nan"
