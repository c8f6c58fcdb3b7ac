"""`ichvol evaluate` end to end: a real (tiny, untrained) model folder, small synthetic cases, the CLI."""

import json
import os
import subprocess
import sys

import pytest
from model_phantoms import write_untrained_model
from test_evaluate_report import REQUIRED_KEYS

from ichvol.errors import ModelError
from ichvol.models.evaluation.cli import evaluate_command
from ichvol.nifti import write_volume
from ichvol.synth import SynthOptions, generate_case

TINY = {
    "name": "ichvol-eval-tiny",
    "version": "0.0.1",
    "stage1": {
        "patch_size": [8, 32, 32],
        "filters": [4, 8, 8],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        "deep_supr_num": 1,
        "in_plane_spacing_mm": 6.0,
    },
    "stage2": {
        "patch_size": [8, 32, 32],
        "filters": [4, 8, 8],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        "deep_supr_num": 1,
    },
}


def _ichvol(*args):
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}  # as in a log: the console's own width
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "ichvol", *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A model folder in the shipped format with seeded random weights: the predictor runs for real, its
    masks are meaningless, which is all the plumbing needs."""
    return write_untrained_model(tmp_path_factory.mktemp("model"), TINY)


@pytest.fixture(scope="module")
def testset(tmp_path_factory):
    root = tmp_path_factory.mktemp("testset")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    types = {}
    for seed in (11, 12):
        case = generate_case(seed, SynthOptions(slices=6, size=64, p_no_hemorrhage=0.0))
        write_volume(root / "images" / f"case{seed}.nii.gz", case.hu, case.geometry)
        write_volume(root / "labels" / f"case{seed}.nii.gz", case.labels, case.geometry)
        types[f"case{seed}"] = case.truth["classification"]
    return root, types


def test_evaluate_end_to_end(tiny_model, testset, tmp_path):
    root, types = testset
    out = tmp_path / "out"
    done = _ichvol("evaluate", "--testset", str(root), "--out", str(out), "--model", str(tiny_model), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "all cases" in done.stdout and "…" not in done.stdout  # a log gets whole cells, not ellipses
    assert "By true volume" in done.stdout and "< 2 ml" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["dsc_by_true_volume"]) == 4 and "dsc_mean_ci95" in summary
    assert REQUIRED_KEYS <= set(summary)
    assert summary["n_cases"] == 2
    assert summary["labels"] == "multiclass"
    assert summary["algorithm"]["name"] == "ichvol-eval-tiny"
    assert 0.0 <= summary["dsc_mean"] <= 1.0
    assert summary["volume_mae_ml_model"] >= 0 and summary["seconds_per_case"] > 0
    lines = (out / "cases.csv").read_text().splitlines()
    assert len(lines) == 3
    assert sorted(line.split(",")[1] for line in lines[1:]) == sorted(types.values())
    for name in ("summary.md", "bland_altman_model.png", "bland_altman_abc2.png", "volume_scatter.png"):
        assert (out / name).stat().st_size > 0
    true_total = sum(float(line.split(",")[7]) for line in lines[1:])
    assert true_total > 0  # the synthetic cases hold hemorrhage and it was measured


def test_an_inference_setting_can_be_changed_for_one_evaluation_and_is_recorded(tiny_model, testset, tmp_path):
    root, _ = testset
    runs = {}
    for name, settings in (("as-is", []), ("changed", ["--set", "cascade.min_roi_voxels=1000000000",
                                                       "--set", "cascade.blend_mode=gaussian"])):
        out = tmp_path / name
        done = _ichvol("evaluate", "--testset", str(root), "--out", str(out), "--model", str(tiny_model),
                       "--device", "cpu", *settings)
        assert done.returncode == 0, done.stderr
        lines = (out / "cases.csv").read_text().splitlines()[1:]
        runs[name] = (json.loads((out / "summary.json").read_text()), [float(line.split(",")[8]) for line in lines])
    summary, predicted = runs["as-is"]
    assert summary["inference_settings_changed"] == {}
    assert sum(predicted) > 0  # the seeded untrained model finds "hemorrhage" as it is
    summary, predicted = runs["changed"]
    # no stage-1 region is that large, so stage 2 never runs: nothing is found
    assert summary["inference_settings_changed"] == {"cascade.min_roi_voxels": 1000000000,
                                                     "cascade.blend_mode": "gaussian"}
    assert predicted == [0.0, 0.0]
    assert summary["algorithm"]["name"] == "ichvol-eval-tiny"
    heading = (tmp_path / "changed" / "summary.md").read_text().splitlines()[0]
    assert heading.endswith('inference settings changed: cascade.min_roi_voxels=1000000000, '
                            'cascade.blend_mode="gaussian"')
    assert "changed" not in (tmp_path / "as-is" / "summary.md").read_text().splitlines()[0]


@pytest.mark.parametrize("setting, message", [
    ("stage2.filters=[4,8,8]", "stage2.filters: not an inference setting"),
    ("cascade.stage2_min_probability", "expected KEY=VALUE"),
    ("cascade.stage2_min_probability=high", "expected a number, got 'high'"),
])
def test_an_unusable_setting_is_refused_before_anything_is_written(tiny_model, testset, tmp_path, setting, message):
    root, _ = testset
    done = _ichvol("evaluate", "--testset", str(root), "--out", str(tmp_path / "o"), "--model", str(tiny_model),
                   "--device", "cpu", "--set", setting)
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_bad_testset_gives_clean_error(tiny_model, testset, tmp_path):
    root, _ = testset
    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    (broken / "labels").mkdir()
    for name in ("case11", "case12"):
        (broken / "images" / f"{name}.nii.gz").write_bytes((root / "images" / f"{name}.nii.gz").read_bytes())
    (broken / "labels" / "case11.nii.gz").write_bytes((root / "labels" / "case11.nii.gz").read_bytes())
    done = _ichvol("evaluate", "--testset", str(broken), "--out", str(tmp_path / "o"), "--model", str(tiny_model))
    assert done.returncode != 0
    assert "no label for case12" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_missing_model_is_a_model_error(testset, tmp_path):
    # In-process (main() turns any IchvolError into a message and exit status, see the test above).
    root, _ = testset
    with pytest.raises(ModelError, match="no such model folder"):
        evaluate_command(testset=root, out=tmp_path / "o", model=tmp_path / "nope", device="cpu")
    assert not (tmp_path / "o").exists()


def test_a_case_the_model_refuses_is_scored_as_finding_nothing_and_named(tiny_model, tmp_path):
    import csv

    import numpy as np
    from model_phantoms import geometry, head

    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    hu, labels = head((10, 64, 64))
    phantom = np.where(hu > 500, hu, -200).astype(np.int16)  # a skull-like shell around air
    for name, image in (("head", hu), ("phantom", phantom)):
        write_volume(root / "images" / f"{name}.nii.gz", image, geometry())
        write_volume(root / "labels" / f"{name}.nii.gz", labels, geometry())
    out = tmp_path / "out"
    done = _ichvol("evaluate", "--testset", str(root), "--out", str(out), "--model", str(tiny_model), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "1 case(s) refused by the model as not a head CT" in " ".join(done.stdout.split())
    assert json.loads((out / "summary.json").read_text())["n_cases_refused"] == 1
    rows = {row["name"]: row for row in csv.DictReader((out / "cases.csv").open())}
    assert rows["head"]["refused"] == ""
    assert "no cranial cavity found" in rows["phantom"]["refused"]
    assert float(rows["phantom"]["dsc"]) == 0.0 and float(rows["phantom"]["predicted_volume_ml"]) == 0.0
    assert float(rows["phantom"]["true_volume_ml"]) > 0
