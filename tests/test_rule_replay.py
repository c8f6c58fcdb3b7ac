"""benchmarks/rule_replay.py: the networks' outputs kept once, the threshold and the rules applied again, give
what `ichvol evaluate` gives with the same settings (a real, tiny, untrained model folder; synthetic cases)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_phantoms import write_untrained_model
from test_evaluate_cli import TINY

from ichvol.models.config import CascadeSettings
from ichvol.models.predictor import AFTER_NETWORK_SETTINGS
from ichvol.nifti import write_volume
from ichvol.synth import SynthOptions, generate_case

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rule_replay.py"
VARIANT = ["cascade.stage2_min_probability=0.05", "cascade.intracranial_gate=false"]


def _run(*args):
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def testset(tmp_path_factory):
    root = tmp_path_factory.mktemp("testset")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for seed in (21, 22):
        case = generate_case(seed, SynthOptions(slices=6, size=64, p_no_hemorrhage=0.0))
        write_volume(root / "images" / f"case{seed}.nii.gz", case.hu, case.geometry)
        write_volume(root / "labels" / f"case{seed}.nii.gz", case.labels, case.geometry)
    return root


def test_replayed_settings_score_as_evaluate_does(tmp_path, testset):
    model = write_untrained_model(tmp_path / "model", TINY)
    cache = tmp_path / "cache"
    done = _run(SCRIPT, "cache", testset, cache, "--model", model)
    assert done.returncode == 0, done.stderr
    variant = " ".join(["low", *VARIANT])
    done = _run(SCRIPT, "score", testset, cache, "--variant", variant, "--json", tmp_path / "r.json")
    assert done.returncode == 0, done.stderr
    replayed = json.loads((tmp_path / "r.json").read_text())
    assert set(replayed) == {"as shipped", "low"}
    for name, settings in (("as shipped", []), ("low", VARIANT)):
        out = tmp_path / name.replace(" ", "_")
        sets = [arg for setting in settings for arg in ("--set", setting)]
        done = _run("-m", "ichvol", "evaluate", "--testset", testset, "--out", out, "--model", model, "--device", "cpu",
                    *sets)
        assert done.returncode == 0, done.stderr
        evaluated = json.loads((out / "summary.json").read_text())
        for key in ("dsc_mean", "precision_mean", "recall_mean", "volume_mae_ml_model"):
            assert replayed[name][key] == pytest.approx(evaluated[key], abs=1e-9), (name, key)
    # The variant changes the masks (the untrained stage 2 is unsure everywhere): the comparison is not empty.
    assert replayed["low"]["volume_mae_ml_model"] != replayed["as shipped"]["volume_mae_ml_model"]


def test_a_setting_the_networks_depend_on_is_refused(tmp_path, testset):
    model = write_untrained_model(tmp_path / "model", TINY)
    cache = tmp_path / "cache"
    assert _run(SCRIPT, "cache", testset, cache, "--model", model).returncode == 0
    done = _run(SCRIPT, "score", testset, cache, "--variant", "wide cascade.roi_margin_mm=20")
    assert done.returncode != 0
    assert "cascade.roi_margin_mm changes what the networks see" in done.stderr


def test_scoring_without_a_cache_is_a_clear_error(tmp_path, testset):
    done = _run(SCRIPT, "score", testset, tmp_path / "nowhere")
    assert done.returncode != 0 and "is not a cache written by" in done.stderr


def test_the_replayable_settings_are_cascade_settings():
    known = {field.name for field in dataclasses.fields(CascadeSettings)}
    assert set(AFTER_NETWORK_SETTINGS) <= known
    assert "stage1_min_probability" not in AFTER_NETWORK_SETTINGS and "roi_margin_mm" not in AFTER_NETWORK_SETTINGS
