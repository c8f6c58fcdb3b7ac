"""Architecture and configuration of the cascade stages."""

import json

import pytest
import torch
from model_phantoms import one_torch_thread  # noqa: F401

from ichvol.errors import ConfigError
from ichvol.labels import NUM_CLASSES
from ichvol.models.config import ModelConfig, load_config, named_configs
from ichvol.models.network import build_network


def _run_on_meta(stage, in_channels, train: bool):
    with torch.device("meta"):
        network = build_network(stage, in_channels, NUM_CLASSES)
        network.train(train)
        shapes = {}

        def keep_shape(module, inputs, output):
            shapes["bottleneck"] = tuple(output.shape)

        network.bottleneck.register_forward_hook(keep_shape)
        output = network(torch.empty(1, in_channels, *stage.patch_size))
    return network, tuple(output.shape), shapes["bottleneck"]


def test_named_configs_ship():
    assert {"paper", "small"} <= set(named_configs())


def test_paper_config_matches_the_published_network():
    config = load_config("paper")
    stage = config.stage1
    assert stage.patch_size == (16, 320, 320)
    assert len(stage.strides) >= 6
    z_downsamplings = sum(s[0] == 2 for s in stage.strides)
    in_plane_downsamplings = sum(s[1] == 2 for s in stage.strides)
    assert (z_downsamplings, in_plane_downsamplings) == (2, 6)
    network, output, bottleneck = _run_on_meta(stage, config.in_channels, train=True)
    assert bottleneck[2:] == (4, 5, 5) == stage.bottleneck_shape
    # Training mode: the full-size output plus one map per deep-supervision head, all at patch size.
    assert output == (1, 1 + stage.deep_supr_num, NUM_CLASSES, 16, 320, 320)
    blocks = [m for m in network.modules() if type(m).__name__ == "UnetResBlock"]
    assert blocks and all(isinstance(b.norm1, torch.nn.BatchNorm3d) for b in blocks)


def test_eval_mode_returns_only_the_final_map():
    config = load_config("small")
    _, output, _ = _run_on_meta(config.stage2, config.in_channels, train=False)
    assert output == (1, NUM_CLASSES, *config.stage2.patch_size)


def test_two_input_channels_keep_calcification_apart_from_blood():
    from ichvol.models.preprocess import normalize

    config = load_config("small")
    values = normalize(torch.tensor([[[70.0, 85.0, 250.0, 1000.0]]]), config.preprocessing)
    blood, dense_blood, calcification, bone = values[:, 0, 0].T
    assert torch.equal(dense_blood[0:1], calcification[0:1])  # the blood window alone cannot tell them apart
    assert calcification[1] > dense_blood[1] + 0.1 and bone[1] > calcification[1]


def test_config_round_trips_through_json(tmp_path):
    config = load_config("small")
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    assert ModelConfig.from_file(path) == config


@pytest.mark.parametrize("change, message", [
    ({"stage1": {"patch_size": [16, 100, 100]}}, "not divisible"),
    ({"stage2": {"filters": [8, 16]}}, "filter counts"),
    ({"cascade": {"roi_margin": 3}}, "unknown CascadeSettings keys"),
    ({"training": {"cascade_validation_every": None}}, "cascade_validation_every: may not be null"),
    ({"training": {"epochs": "many"}}, "epochs: expected a number"),
])
def test_invalid_config_is_refused_with_the_reason(tmp_path, change, message):
    data = load_config("small").to_dict()
    for section, values in change.items():
        data[section].update(values)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_file(path)


def test_inference_settings_are_replaced_and_checked_as_a_config_file_is():
    config = load_config("small")
    changed = config.with_inference_settings({
        "cascade.stage2_min_probability": 0.5,
        "cascade.component_median_hu": None,
        "cascade.rim_growth_types": ["SDH"],
        "stage1.in_plane_spacing_mm": 2.4,
        "stage2.patch_size": [16, 128, 128],
    })
    assert changed.cascade.stage2_min_probability == 0.5
    assert changed.cascade.component_median_hu is None
    assert changed.cascade.rim_growth_labels == (4,)
    assert changed.stage1.in_plane_spacing_mm == 2.4
    assert changed.stage2.patch_size == (16, 128, 128)
    assert (changed.stage1.filters, changed.stage2.strides) == (config.stage1.filters, config.stage2.strides)
    assert changed.with_inference_settings({}) == changed
    assert config == load_config("small")  # the original is untouched


@pytest.mark.parametrize("settings, message", [
    ({"stage2.filters": [4, 8, 8, 8, 8, 8]}, "not an inference setting"),  # the weights depend on it
    ({"preprocessing.head_margin_mm": 3.0}, "not an inference setting"),
    ({"training.seed": 1}, "not an inference setting"),
    ({"cascade": 1}, "not an inference setting"),
    ({"cascade.roi_margin": 3}, "cascade.roi_margin: unknown setting"),
    ({"cascade.stage2_min_probability": "high"}, "expected a number"),
    ({"cascade.stage1_type_prior": 1}, "expected true or false"),
    ({"stage1.roi_max_spacing_mm": "fine"}, "expected a number"),  # unset in the config: its declared kind
    ({"cascade.component_median_hu": 100}, "expected a list"),
    ({"cascade.blend_mode": 1}, "expected a string"),
    ({"cascade.intracranial_gate": None}, "may not be null"),
    ({"cascade.rim_growth_types": ["SDX"]}, "unknown hemorrhage type"),
    ({"cascade.stage1_type_prior_types": ["EDH", "epidural"]}, "unknown hemorrhage type"),
    ({"cascade.stage1_type_prior": False, "cascade.stage1_type_split_types": ["IPH", "IVH"]},
     "needs stage1_type_prior"),
    ({"cascade.stage1_type_prior": True, "cascade.stage1_type_split_types": ["IPH"]}, "two or more types"),
    ({"cascade.stage1_type_prior": True, "cascade.stage1_type_split_exponent": 0}, "must be positive"),
    ({"stage2.patch_size": [16, 100, 100]}, "not divisible"),
    ({"cascade.type_network_adds_types": ["SAH", "blood"]}, "unknown hemorrhage type"),
    ({"cascade.type_network_min_stage1_support": 1.5}, "a probability"),
])
def test_unusable_inference_settings_are_refused_with_the_reason(settings, message):
    with pytest.raises(ConfigError, match=message):
        load_config("small").with_inference_settings(settings)


def test_unknown_config_name_is_a_config_error():
    with pytest.raises(ConfigError, match="neither a named config"):
        load_config("no-such-config")
