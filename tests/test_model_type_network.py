"""A second stage-2 network that settles types only (`cascade.type_ensemble_types`, `ichvol type-network`): the
folder it makes, what it refuses, and that it changes types but never the hemorrhage mask."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from model_phantoms import (  # noqa: F401
    TINY_CONFIG,
    BloodAbove,
    constant_network,
    ct_image,
    geometry,
    head,
    one_torch_thread,
    write_untrained_model,
)

from ichvol.errors import ConfigError, ModelError
from ichvol.image import CTImage
from ichvol.labels import Hemorrhage
from ichvol.models.cascade import RoiOutput
from ichvol.models.config import ModelConfig
from ichvol.models.folder import TYPE_NETWORK, weights_file
from ichvol.models.predictor import CascadePredictor
from ichvol.models.type_network import TypeNetworkUse, add_type_network


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
        add_type_network(base, other, TypeNetworkUse(("IVH", "SAH")), tmp_path / "o1")
    with pytest.raises(ConfigError, match="film rule"):
        add_type_network(base, base, TypeNetworkUse(("SAH", "SDH")), tmp_path / "o2")
    with pytest.raises(ConfigError, match="two or more"):
        add_type_network(base, base, TypeNetworkUse(("SAH",)), tmp_path / "o3")
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))


def test_rim_growth_around_some_of_the_types_only_is_refused():
    cascade = {**TINY_CONFIG["cascade"], "rim_growth_hu": [45.0, 800.0], "rim_growth_types": ["IPH", "IVH"],
               "type_ensemble_types": ["IVH", "SAH"]}
    with pytest.raises(ConfigError, match="rim grows"):
        ModelConfig.from_dict({**TINY_CONFIG, "cascade": cascade})


def test_a_folder_that_lost_its_type_network_is_refused(tmp_path):
    base = write_untrained_model(tmp_path / "base", seed=1)
    out = add_type_network(base, base, TypeNetworkUse(("IVH", "SAH")), tmp_path / "typed")
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


def _stage1_sure_of(config, hemorrhage_probability):
    """Stage 1 calling every voxel IVH with this hemorrhage probability (the rest background)."""
    network = constant_network(config.stage1, config, Hemorrhage.IVH, seed=1)
    with torch.no_grad():
        bias = network.output_block.conv.conv.bias
        bias.fill_(-30.0)
        bias[Hemorrhage.IVH] = 0.0
        bias[0] = float(np.log((1 - hemorrhage_probability) / hemorrhage_probability))
    return network


def test_the_type_network_grows_stage2s_findings_with_its_types_where_stage1_supports_them():
    """Stage 2 finds a 70 HU IVH; the type network calls SAH over 45 HU, so also a 55 HU region against the IVH and one
    apart from it. Only the first is added, and only when SAH may be added and stage 1's hemorrhage probability (0.6
    everywhere) reaches the support asked for."""
    shape = (9, 64, 64)
    hu, _ = head(shape, lesions=((int(Hemorrhage.IVH), (4, 28, 24), (2, 5, 5)),), calcification=False)
    touching, apart = np.zeros(shape, bool), np.zeros(shape, bool)
    touching[3:6, 26:31, 27:35] = True  # over the IVH's edge (x 19-29) and beyond it
    apart[3:6, 40:45, 36:42] = True
    hu[touching | apart] = 55
    image = CTImage(hu, geometry(shape))
    config = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {**TINY_CONFIG["cascade"], "intracranial_gate": False}})
    networks = {1: _stage1_sure_of(config, 0.6), 2: BloodAbove(config, int(Hemorrhage.IVH), 62.0).eval(),
                TYPE_NETWORK: BloodAbove(config, int(Hemorrhage.SAH), 45.0).eval()}
    predictor = CascadePredictor(config, networks)

    def labels(**settings):
        changed = {f"cascade.{key}": value for key, value in settings.items()}
        return predictor.with_inference_settings(changed).predict(image).labels

    alone = labels()
    assert set(np.unique(alone)) == {0, int(Hemorrhage.IVH)} and not alone[apart].any()
    assert (alone[touching] > 0).mean() < 0.2  # the IVH's edge only
    grown = labels(type_network_adds_types=["SAH"], type_network_min_stage1_support=0.5)
    assert (grown[alone > 0] == alone[alone > 0]).all()  # what stage 2 found stays as it was
    assert (grown[touching & (alone == 0)] == Hemorrhage.SAH).mean() > 0.6  # its blurred rim aside
    assert not grown[apart].any()
    adding = predictor.with_inference_settings({"cascade.type_network_adds_types": ["SAH"]})
    (roi,) = adding.network_outputs(image).rois
    offered = np.zeros(shape, dtype=np.float32)
    offered[roi.box] = roi.added[0]
    assert (offered[apart] >= 0.5).mean() > 0.6  # the type network offered it: it touches nothing stage 2 found
    assert (labels(type_network_adds_types=["SAH"], type_network_min_stage1_support=0.7) == alone).all()
    assert (labels(type_network_adds_types=["IPH", "IVH"]) == alone).all()  # it calls SAH, which it may not add


def test_additions_touch_stage2s_findings_and_follow_the_threshold():
    box = (slice(0, 1), slice(0, 1), slice(0, 6))
    stage2 = np.array([[[0.7, 0.3, 0.3, 0.9, 0.1, 0.1]]], dtype=np.float32)
    kind = np.full(stage2.shape, int(Hemorrhage.IVH), dtype=np.uint8)
    added = (np.array([[[0.9, 0.8, 0.5, 0.0, 0.0, 0.9]]], dtype=np.float32),
             np.full(stage2.shape, int(Hemorrhage.SAH), np.uint8))
    roi = RoiOutput(box, stage2, kind, added)
    ivh, sah = int(Hemorrhage.IVH), int(Hemorrhage.SAH)
    assert roi.labels(0.6).tolist() == [[[ivh, sah, 0, ivh, 0, 0]]]  # the last touches nothing stage 2 found
    assert roi.labels(0.45).tolist() == [[[ivh, sah, sah, ivh, 0, 0]]]  # a replay at another threshold stays exact
    assert RoiOutput(box, stage2, kind).labels(0.6).tolist() == [[[ivh, 0, 0, ivh, 0, 0]]]


def test_the_cli_writes_what_the_type_network_may_add(tmp_path):
    base, donor = write_untrained_model(tmp_path / "base", seed=1), write_untrained_model(tmp_path / "donor", seed=2)
    out = tmp_path / "adding"
    run = subprocess.run([sys.executable, "-m", "ichvol", "type-network", str(base), str(donor), "--out", str(out),
                          "--adds", "SAH", "--min-stage1-support", "0.2"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    cascade = json.loads((out / "config.json").read_text())["cascade"]
    assert (cascade["type_network_adds_types"], cascade["type_network_min_stage1_support"]) == (["SAH"], 0.2)
    assert "may add SAH where stage 2 finds none" in (out / "MODEL_CARD.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "ichvol", "type-network", str(base), str(donor), "--out",
                          str(tmp_path / "bad"), "--adds", "SAH", "--min-stage1-support", "1.5"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "a probability (0 to 1)" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
