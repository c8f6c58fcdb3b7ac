"""A second stage-2 network that settles types only (`cascade.type_ensemble_types`, `ichvol type-network`): the
folder it makes, what it refuses, and that it changes types but never the hemorrhage mask."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from model_phantoms import TINY_CONFIG, constant_network, ct_image, one_torch_thread, write_untrained_model  # noqa: F401

from ichvol.errors import ConfigError, ModelError
from ichvol.labels import Hemorrhage
from ichvol.models.config import ModelConfig
from ichvol.models.folder import TYPE_NETWORK, weights_file
from ichvol.models.predictor import CascadePredictor
from ichvol.models.type_network import add_type_network


def _weights(folder, key):
    return torch.load(folder / weights_file(key), map_location="cpu", weights_only=True)


def test_the_cli_adds_the_donors_stage2_as_the_type_network(tmp_path):
    base, donor = write_untrained_model(tmp_path / "base", seed=1), write_untrained_model(tmp_path / "donor", seed=2)
    out = tmp_path / "typed"
    run = subprocess.run([sys.executable, "-m", "ichvol", "type-network", str(base), str(donor), "--out", str(out),
                          "--types", "IVH,SAH"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "config.json").read_text())["cascade"]["type_ensemble_types"] == ["IVH", "SAH"]
    donor_stage2, carried = _weights(donor, 2), _weights(out, TYPE_NETWORK)
    assert carried.keys() == donor_stage2.keys() and all(torch.equal(carried[k], donor_stage2[k]) for k in carried)
    assert all(torch.equal(v, _weights(base, 2)[k]) for k, v in _weights(out, 2).items())  # the mask stays base's
    assert json.loads((out / "training.json").read_text())["type_network"]["types"] == ["IVH", "SAH"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "a voxel typed IVH or SAH takes the one of them with most geometric mean" in card
    assert "Type network (`ichvol type-network`)" in card
    predictor = CascadePredictor.from_folder(out, device="cpu")
    assert set(predictor.networks) == {1, 2, TYPE_NETWORK}
    again = subprocess.run([sys.executable, "-m", "ichvol", "type-network", str(base), str(donor), "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr and "Traceback" not in again.stderr


def test_another_network_and_types_the_rules_tell_apart_are_refused(tmp_path):
    base = write_untrained_model(tmp_path / "base", seed=1)
    wider = {**TINY_CONFIG, "stage2": {**TINY_CONFIG["stage2"], "filters": [8, 16, 16]}}
    other = write_untrained_model(tmp_path / "wider", wider)
    with pytest.raises(ModelError, match="do not match the architecture"):
        add_type_network(base, other, ("IVH", "SAH"), tmp_path / "o1")
    with pytest.raises(ConfigError, match="film rule"):
        add_type_network(base, base, ("SAH", "SDH"), tmp_path / "o2")
    with pytest.raises(ConfigError, match="two or more"):
        add_type_network(base, base, ("SAH",), tmp_path / "o3")
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))


def test_rim_growth_around_some_of_the_types_only_is_refused():
    cascade = {**TINY_CONFIG["cascade"], "rim_growth_hu": [45.0, 800.0], "rim_growth_types": ["IPH", "IVH"],
               "type_ensemble_types": ["IVH", "SAH"]}
    with pytest.raises(ConfigError, match="rim grows"):
        ModelConfig.from_dict({**TINY_CONFIG, "cascade": cascade})


def test_a_folder_that_lost_its_type_network_is_refused(tmp_path):
    base = write_untrained_model(tmp_path / "base", seed=1)
    out = add_type_network(base, base, ("IVH", "SAH"), tmp_path / "typed")
    (out / weights_file(TYPE_NETWORK)).unlink()
    with pytest.raises(ModelError, match="missing weights stage2_types.pt"):
        CascadePredictor.from_folder(out, device="cpu")


def test_the_type_network_settles_its_types_and_leaves_the_mask():
    """Stage 2 says IVH, SAH second; the type network is sure of SAH. Settling IVH against SAH the voxels turn SAH;
    settling IPH against IVH they stay IVH (SAH is not among them); the hemorrhage mask is the same each time."""
    image, _ = ct_image((9, 64, 64))
    config = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {**TINY_CONFIG["cascade"], "intracranial_gate": False}})
    stage2 = constant_network(config.stage2, config, Hemorrhage.IVH, seed=2)
    with torch.no_grad():
        stage2.output_block.conv.conv.bias[Hemorrhage.SAH] = 9.0
    networks = {1: constant_network(config.stage1, config, Hemorrhage.IVH, seed=1), 2: stage2,
                TYPE_NETWORK: constant_network(config.stage2, config, Hemorrhage.SAH, seed=3)}
    alone = CascadePredictor(config, {1: networks[1], 2: stage2}).predict(image).labels
    assert set(np.unique(alone)) == {0, int(Hemorrhage.IVH)}
    predictor = CascadePredictor(config, networks)
    for types, expected in ((["IVH", "SAH"], Hemorrhage.SAH), (["IPH", "IVH"], Hemorrhage.IVH)):
        labels = predictor.with_inference_settings({"cascade.type_ensemble_types": types}).predict(image).labels
        assert set(np.unique(labels)) == {0, int(expected)} and ((labels > 0) == (alone > 0)).all()
