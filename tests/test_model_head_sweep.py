"""Stage 2's sweep of the whole head (`cascade.head_sweep`): it adds what it finds outside every ROI, leaves the ROIs'
own verdict, and replays without the networks; the sliding window's batch size changes no result."""

import numpy as np
import pytest
from model_phantoms import TINY_CONFIG, BloodAbove, geometry, head, one_torch_thread  # noqa: F401

from ichvol.errors import ConfigError, InputError
from ichvol.image import CTImage
from ichvol.labels import Hemorrhage
from ichvol.models.cascade import RoiOutput, head_sweep_box, outside_rois, stage1_findings, stage2_output
from ichvol.models.config import ModelConfig
from ichvol.models.network import build_network
from ichvol.models.predictor import CascadePredictor

IVH = int(Hemorrhage.IVH)


@pytest.fixture
def two_bleeds():
    """A dense bleed that stage 1 finds (85 HU, front) and a fainter one 50 mm behind it that it does not (65 HU); stage
    2 calls blood over 55 HU, so it finds the second only where it looks."""
    shape = (9, 64, 64)
    hu, _ = head(shape, lesions=(), calcification=False)
    z, y, x = np.indices(shape)
    front = ((z - 4) / 2) ** 2 + ((y - 18) / 4) ** 2 + ((x - 32) / 4) ** 2 <= 1
    back = ((z - 4) / 2) ** 2 + ((y - 44) / 4) ** 2 + ((x - 32) / 4) ** 2 <= 1
    hu[front], hu[back] = 85, 65
    config = ModelConfig.from_dict({**TINY_CONFIG, "stage2": {**TINY_CONFIG["stage2"], "roi_max_spacing_mm": 2.0},
                                    "cascade": {**TINY_CONFIG["cascade"], "intracranial_gate": False}})
    networks = {1: BloodAbove(config, IVH, 78.0).eval(), 2: BloodAbove(config, IVH, 55.0).eval()}
    return CTImage(hu, geometry(shape)), front, back, CascadePredictor(config, networks)


def test_the_sweep_finds_what_no_roi_holds_and_leaves_the_rois_own(two_bleeds):
    image, front, back, predictor = two_bleeds
    cascade = predictor.predict(image)
    assert len(cascade.rois) == 1 and (cascade.labels[front] == IVH).mean() > 0.9 and not cascade.labels[back].any()
    sweeping = predictor.with_inference_settings({"cascade.head_sweep": True})
    swept = sweeping.predict(image).labels
    assert (swept[back] == IVH).mean() > 0.9
    (roi,) = cascade.rois
    box = tuple(slice(*bounds) for bounds in roi)
    assert (swept[box] == cascade.labels[box]).all()  # inside the ROI, its own verdict
    assert not swept[~(front | back)].any()

    outputs = sweeping.network_outputs(image)
    assert outputs.sweep is not None and predictor.network_outputs(image).sweep is None
    assert (predictor.labels_from(outputs, image) == cascade.labels).all()  # replayed without the sweep
    with pytest.raises(InputError, match="hold no sweep"):
        sweeping.labels_from(predictor.network_outputs(image), image)


def test_the_sliding_windows_batch_size_changes_nothing(two_bleeds):
    image, _, _, predictor = two_bleeds
    one = predictor.with_inference_settings({"cascade.head_sweep": True})
    four = one.with_inference_settings({"cascade.sliding_window_batch_size": 4})
    outputs = [p.network_outputs(image) for p in (one, four)]
    assert np.allclose(outputs[0].sweep.foreground, outputs[1].sweep.foreground, atol=1e-5)
    assert (one.labels_from(outputs[0], image) == four.labels_from(outputs[1], image)).all()
    with pytest.raises(ConfigError, match="sliding_window_batch_size"):
        predictor.with_inference_settings({"cascade.sliding_window_batch_size": 0})


def test_outside_rois_clears_each_rois_box_within_the_sweeps():
    box = (slice(2, 4), slice(10, 14), slice(10, 14))
    sweep = RoiOutput(box, np.ones((2, 4, 4), np.float32), np.full((2, 4, 4), IVH, np.uint8))
    inside = RoiOutput((slice(0, 3), slice(12, 20), slice(8, 11)), np.ones((3, 8, 3), np.float32),
                       np.ones((3, 8, 3), np.uint8))
    before = RoiOutput((slice(0, 1), slice(0, 5), slice(0, 5)), np.ones((1, 5, 5), np.float32),
                       np.ones((1, 5, 5), np.uint8))
    labels = outside_rois(sweep, [inside, before], 0.5)
    expected = np.full((2, 4, 4), IVH, np.uint8)
    expected[0:1, 2:4, 0:1] = 0  # the overlap of `inside`; `before` lies wholly before the sweep's box
    assert (labels == expected).all()


def test_judging_stage_2_a_few_slices_at_a_time_gives_the_whole_rois_verdict():
    """Random (untrained) networks give every voxel a different mixture of types, so the stage-1 type prior, the split,
    the type network's ensemble and its additions all act; slabs of any size must give the same arrays."""
    shape = (11, 64, 64)
    hu, _ = head(shape, lesions=((IVH, (5, 30, 30), (4, 9, 8)),))
    config = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {
        **TINY_CONFIG["cascade"], "stage1_min_probability": 0.0, "stage1_type_prior": True,
        "stage1_type_prior_types": ["SDH", "EDH"], "stage1_type_split_types": ["IPH", "IVH"],
        "type_ensemble_types": ["IVH", "SAH"], "type_network_adds_types": ["SAH"],
        "type_network_min_stage1_support": 0.0}})
    networks = {key: build_network(config.stage2 if key != 1 else config.stage1, config.in_channels,
                                   config.num_classes).eval() for key in (1, 2, 3)}
    findings = stage1_findings(networks[1], hu, (2.0, 2.0), 5.0, config)
    box = head_sweep_box(findings, hu.shape)
    assert box[0].stop - box[0].start == shape[0] and box[1].stop - box[1].start != config.stage2.patch_size[1]
    whole, *slabs = (stage2_output(networks[2], hu, box, (2.0, 2.0), config, findings, networks[3], slab_slices=n)
                     for n in (shape[0], 1, 3))
    assert len(np.unique(whole.kind)) >= 3 and whole.added is not None and whole.added[0].any()
    for slabbed in slabs:
        assert np.array_equal(slabbed.foreground, whole.foreground) and np.array_equal(slabbed.kind, whole.kind)
        assert all(np.array_equal(a, b) for a, b in zip(slabbed.added, whole.added, strict=True))
