"""Small synthetic head CTs with known hemorrhage for the model tests (no dependency on ichvol.synth)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ichvol.geometry import VolumeGeometry
from ichvol.image import CTImage
from ichvol.models.config import ModelConfig
from ichvol.models.network import build_network
from ichvol.models.predictor import CascadePredictor
from ichvol.nifti import write_volume

TINY_CONFIG = {
    "name": "ichvol-test-tiny",
    "version": "0.0.1",
    "stage1": {"patch_size": [8, 32, 32], "filters": [4, 8, 8], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
               "deep_supr_num": 1, "in_plane_spacing_mm": 4.0},
    "stage2": {"patch_size": [8, 32, 32], "filters": [4, 8, 8], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
               "deep_supr_num": 1},
    "cascade": {"roi_margin_mm": 6.0},
    "training": {"epochs": 1, "iterations_per_epoch": 3, "batch_size": 2, "validation_fraction": 0.25},
}


def geometry(shape=(10, 64, 64), spacing=(2.0, 2.0), slice_step=5.0, tilt_degrees=0.0) -> VolumeGeometry:
    z = np.arange(shape[0], dtype=float)
    shift = np.tan(np.radians(tilt_degrees)) * slice_step  # tilt: each slice shifted along the column axis
    positions = np.stack([np.zeros_like(z), -100.0 + z * shift, z * slice_step], axis=1)
    return VolumeGeometry(positions, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), spacing,
                          shape[1], shape[2])


def head(shape=(10, 64, 64), lesions=((1, (5, 28, 24), (2, 7, 6)),), seed=0, calcification=True):
    """(hu int16, labels uint8): skull ellipse, brain, optional calcification, ellipsoid lesions given as
    (label, centre zyx, radii zyx in voxels)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=float)
    cy, cx = shape[1] / 2, shape[2] / 2
    r = np.sqrt(((y - cy) / (0.42 * shape[1])) ** 2 + ((x - cx) / (0.36 * shape[2])) ** 2)
    hu = np.full(shape, -1000.0)
    hu[r < 1.0] = 1000.0
    hu[r < 0.88] = 32.0
    labels = np.zeros(shape, dtype=np.uint8)
    for label, (lz, ly, lx), (rz, ry, rx) in lesions:
        inside = ((z - lz) / rz) ** 2 + ((y - ly) / ry) ** 2 + ((x - lx) / rx) ** 2 <= 1.0
        inside &= r < 0.85
        hu[inside] = 70.0
        labels[inside] = label
    if calcification:
        hu[shape[0] // 2, int(cy) + 4: int(cy) + 6, int(cx) + 8: int(cx) + 10] = 250.0
    hu += rng.normal(0.0, 4.0, shape) * (r < 0.88)
    return hu.astype(np.int16), labels


def ct_image(shape=(10, 64, 64), tilt_degrees=0.0, **kwargs) -> tuple[CTImage, np.ndarray]:
    hu, labels = head(shape, **kwargs)
    return CTImage(hu, geometry(shape, tilt_degrees=tilt_degrees)), labels


def write_dataset(folder: Path, n_cases: int = 4, shape=(10, 64, 64)) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        rng = np.random.default_rng(100 + i)
        centre = (int(rng.integers(3, shape[0] - 3)), int(rng.integers(24, 40)), int(rng.integers(22, 42)))
        hu, labels = head(shape, lesions=((1 + i % 2, centre, (2, 6, 5)),), seed=i)
        write_volume(folder / "images" / f"case{i:03d}.nii.gz", hu, geometry(shape))
        write_volume(folder / "labels" / f"case{i:03d}.nii.gz", labels, geometry(shape))
    (folder / "dataset.json").write_text(json.dumps({"synthetic": True, "generator": "tests/model_phantoms"}))
    return folder


def write_untrained_model(folder: Path, config_dict: dict = TINY_CONFIG, seed: int = 0) -> Path:
    """A complete model folder (config.json, labels.json, stage1.pt, stage2.pt) with seeded random weights:
    the predictor and the worker run the cascade for real; the masks mean nothing."""
    from ichvol.models.config import ModelConfig
    from ichvol.models.folder import write_config as write_model_config
    from ichvol.models.folder import write_weights
    from ichvol.models.network import build_network

    config = ModelConfig.from_dict(config_dict)
    write_model_config(folder, config)
    torch.manual_seed(seed)
    for stage, stage_config in ((1, config.stage1), (2, config.stage2)):
        write_weights(folder, stage, build_network(stage_config, config.in_channels, config.num_classes).state_dict())
    return folder


def write_config(path: Path, **changes) -> Path:
    config = json.loads(json.dumps(TINY_CONFIG))
    for section, values in changes.items():
        config[section].update(values)
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The suite shares two cores: torch's OpenMP threads spinning against each other cost far more than
    they gain on these tiny volumes (imported into each model test module, where it applies to every test)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def constant_network(stage_config, config: ModelConfig, winner: int, seed: int = 0) -> torch.nn.Module:
    """A real network whose output bias makes every voxel come out as class `winner`: a stage that always (or
    never) finds hemorrhage."""
    torch.manual_seed(seed)
    network = build_network(stage_config, config.in_channels, config.num_classes)
    with torch.no_grad():
        network.output_block.conv.conv.weight.zero_()
        network.output_block.conv.conv.bias.fill_(-10.0)
        network.output_block.conv.conv.bias[winner] = 10.0
    return network.eval()


def constant_predictor(stage1_class: int, stage2_class: int, gate: bool = False) -> CascadePredictor:
    """Both stages constant (`constant_network`), so that the cascade's control flow can be checked exactly (the
    cranial cavity gate, off unless asked, would clear the skull and scalp)."""
    config = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {**TINY_CONFIG["cascade"], "intracranial_gate": gate}})
    networks = {stage: constant_network(config.stage(stage), config, winner, seed=stage)
                for stage, winner in ((1, stage1_class), (2, stage2_class))}
    return CascadePredictor(config, networks)


class BloodAbove(torch.nn.Module):
    """A real two-layer network of 1x1x1 convolutions that calls `label` wherever the blood window reads over `hu` and
    the bone window under about 90 HU (so not the skull), background elsewhere: a stage whose findings follow the
    image."""

    def __init__(self, config: ModelConfig, label: int, hu: float):
        super().__init__()
        self.bone = torch.nn.Conv3d(config.in_channels, 1, 1)
        self.conv = torch.nn.Conv3d(config.in_channels + 1, config.num_classes, 1)
        blood, bone = config.preprocessing.windows
        with torch.no_grad():
            self.bone.weight.zero_()
            self.bone.weight[0, 1] = 1.0  # the bone window's channel, 0-1 over its width
            self.bone.bias.fill_(-(90.0 - (bone.level - bone.width / 2)) / bone.width)
            self.conv.weight.zero_()
            self.conv.bias.fill_(-30.0)
            self.conv.bias[0] = 0.0
            self.conv.weight[label, 0] = 200.0  # the blood window's channel, 0-1 over its width
            self.conv.weight[label, 2] = -5000.0
            self.conv.bias[label] = -200.0 * (hu - (blood.level - blood.width / 2)) / blood.width

    def forward(self, x):
        return self.conv(torch.cat((x, torch.relu(self.bone(x))), dim=1))
