"""`ichvol predict` on a NIfTI image and on a synthetic DICOM study (SEG + SR checked by dciodvfy)."""

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
import torch
from model_phantoms import TINY_CONFIG, geometry, head, one_torch_thread  # noqa: F401
from typer.testing import CliRunner

from ichvol.cli import app
from ichvol.errors import NotAHeadCTError
from ichvol.labels import Hemorrhage
from ichvol.models.config import ModelConfig
from ichvol.models.folder import write_config, write_weights
from ichvol.models.network import build_network
from ichvol.nifti import write_volume

runner = CliRunner()


@pytest.fixture(scope="module")
def always_iph_model(tmp_path_factory):
    """A real model folder whose stage 1 flags the whole head and whose stage 2 calls every voxel IPH."""
    config = ModelConfig.from_dict(TINY_CONFIG)
    folder = tmp_path_factory.mktemp("model") / "always-iph"
    write_config(folder, config)
    for stage, stage_config in ((1, config.stage1), (2, config.stage2)):
        network = build_network(stage_config, config.in_channels, config.num_classes)
        with torch.no_grad():
            network.output_block.conv.conv.weight.zero_()
            network.output_block.conv.conv.bias.fill_(-10.0)
            network.output_block.conv.conv.bias[int(Hemorrhage.IPH)] = 10.0
        write_weights(folder, stage, network.state_dict())
    return folder


def test_predict_on_nifti_writes_labels_on_the_image_grid(tmp_path, always_iph_model):
    hu, _ = head((10, 64, 64))
    grid = geometry((10, 64, 64), tilt_degrees=12.0)
    write_volume(tmp_path / "ct.nii.gz", hu, grid)
    result = runner.invoke(app, ["predict", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "out"),
                                 "--model", str(always_iph_model), "--device", "cpu"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    written = nib.load(str(tmp_path / "out" / "labels.nii.gz"))
    assert written.shape == (64, 64, 10)
    np.testing.assert_allclose(written.affine, grid.nifti_affine(), atol=1e-4)
    assert "IPH" in result.output and "study type: IPH" in result.output
    assert not (tmp_path / "out" / "sr.dcm").exists()  # no DICOM source, so no SEG/SR


def test_predict_on_a_dicom_study_writes_seg_and_sr_that_dciodvfy_accepts(tmp_path, always_iph_model):
    synth = pytest.importorskip("ichvol.synth.dataset")
    options = pytest.importorskip("ichvol.synth.options")
    synth.write_dataset(tmp_path / "synth", 1, seed=3, formats=("dicom",),
                        options=options.SynthOptions(slices=8, size=64))
    study = next((tmp_path / "synth" / "dicom").iterdir())
    result = runner.invoke(app, ["predict", str(study), "--out", str(tmp_path / "out"),
                                 "--model", str(always_iph_model), "--device", "cpu"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    seg, sr = tmp_path / "out" / "seg.dcm", tmp_path / "out" / "sr.dcm"
    assert seg.is_file() and sr.is_file() and (tmp_path / "out" / "labels.nii.gz").is_file()
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    for path in (seg, sr):
        run = subprocess.run([tool, "-new", str(path)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (path.name, errors)


def test_predict_on_a_missing_path_is_an_input_error(tmp_path):
    from ichvol.errors import InputError

    result = runner.invoke(app, ["predict", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, InputError)


def test_predict_refuses_an_image_without_a_cranial_cavity_and_writes_nothing(tmp_path, always_iph_model):
    hu, _ = head((10, 64, 64), lesions=(), calcification=False)
    hu = np.where(hu > 500, hu, -200).astype(np.int16)  # a skull-like shell around air: a QA phantom
    write_volume(tmp_path / "phantom.nii.gz", hu, geometry((10, 64, 64)))
    result = runner.invoke(app, ["predict", str(tmp_path / "phantom.nii.gz"), "--out", str(tmp_path / "out"),
                                 "--model", str(always_iph_model), "--device", "cpu"])
    assert isinstance(result.exception, NotAHeadCTError)
    assert "no cranial cavity found" in str(result.exception)
    assert not (tmp_path / "out" / "labels.nii.gz").exists()
