"""The cascade predictor: labels on the image's own grid, ROIs from stage 1, stage 2 only where needed."""

import dataclasses

import numpy as np
import pytest
import torch
from model_phantoms import TINY_CONFIG, constant_predictor, ct_image, one_torch_thread  # noqa: F401

from ichvol.image import CTImage
from ichvol.labels import Hemorrhage
from ichvol.models.cascade import Stage1Findings, hemorrhage_labels, roi_boxes, split_types, weigh_types
from ichvol.models.config import CascadeSettings, ModelConfig
from ichvol.models.preprocess import foreground_boxes, head_box, resize


@pytest.mark.parametrize("tilt", [0.0, 18.5])
def test_labels_come_back_on_the_original_grid(tilt):
    image, _ = ct_image((9, 70, 58), tilt_degrees=tilt)
    prediction = constant_predictor(Hemorrhage.IPH, Hemorrhage.SDH).predict(image)
    assert prediction.labels.shape == image.hu.shape and prediction.labels.dtype == np.uint8
    assert len(prediction.rois) == 1
    (z0, z1), (y0, y1), (x0, x1) = prediction.rois[0]
    inside = np.zeros(image.hu.shape, bool)
    inside[z0:z1, y0:y1, x0:x1] = True
    # Stage 2's class, and only inside the ROI that stage 1 produced (around the head, not the air).
    assert set(np.unique(prediction.labels[inside])) == {int(Hemorrhage.SDH)}
    assert not prediction.labels[~inside].any()
    head = head_box(image.hu, ModelConfig.from_dict(TINY_CONFIG).preprocessing, image.geometry.pixel_spacing)
    # Stage 1 found hemorrhage everywhere in the head crop: the ROI holds all of it.
    assert y0 <= head[1].start and y1 >= head[1].stop and x0 <= head[2].start and x1 >= head[2].stop
    assert prediction.seconds_total >= prediction.seconds_stage1 + prediction.seconds_stage2 - 1e-6


def test_stage2_is_skipped_when_stage1_finds_nothing():
    image, _ = ct_image((9, 64, 64))
    predictor = constant_predictor(0, Hemorrhage.IPH)
    calls = []
    predictor.networks[2].register_forward_hook(lambda module, inputs, output: calls.append(1))
    prediction = predictor.predict(image)
    assert prediction.rois == [] and not prediction.labels.any() and calls == []
    assert prediction.seconds_stage2 < 0.05


def test_far_apart_lesions_give_separate_rois_and_near_ones_merge():
    shape, spacing = (20, 200, 200), (0.5, 0.5)
    mask = np.zeros(shape, bool)
    mask[5:8, 20:30, 20:30] = True
    mask[12:15, 160:170, 160:170] = True  # ~90 mm away
    settings = CascadeSettings(roi_margin_mm=5.0, merge_distance_mm=20.0)
    far = roi_boxes(foreground_boxes(mask, 1), shape, spacing, 5.0, settings)
    assert len(far) == 2
    for box in far:  # enlarged by the margin, square in-plane, inside the image
        assert box[1].stop - box[1].start == box[2].stop - box[2].start
        assert all(0 <= s.start < s.stop <= n for s, n in zip(box, shape, strict=True))
    mask[12:15, 160:170, 160:170] = False
    mask[6:8, 40:44, 40:44] = True  # 5 mm away: one box
    assert len(roi_boxes(foreground_boxes(mask, 1), shape, spacing, 5.0, settings)) == 1


def test_stage1_type_probabilities_over_a_box_match_resizing_the_whole_head():
    torch.manual_seed(0)
    probabilities = torch.softmax(torch.randn(6, 4, 7, 6), dim=0)
    head = (slice(2, 10), slice(10, 38), slice(5, 29))  # an 8 x 28 x 24 head crop on its 4 x 7 x 6 coarse grid
    findings = Stage1Findings([], head, probabilities)
    full = resize(probabilities[1:], (8, 28, 24))
    full = full / full.sum(0, keepdim=True)
    inside = (slice(3, 7), slice(14, 30), slice(9, 20))
    got = findings.type_probabilities(inside)
    assert got.shape == (5, 4, 16, 11)
    assert torch.allclose(got, full[:, 1:5, 4:20, 4:15], atol=1e-5)
    # A ROI reaching beyond the head crop (margins, squaring) takes the crop's edge values there.
    beyond = findings.type_probabilities((slice(0, 4), slice(10, 12), slice(5, 7)))
    assert torch.allclose(beyond[:, 2:], full[:, 0:2, 0:2, 0:2], atol=1e-5)
    assert torch.allclose(beyond[:, 0], full[:, 0, 0:2, 0:2], atol=1e-5)


def test_stage1_foreground_probability_over_a_box_matches_resizing_the_whole_head():
    torch.manual_seed(1)
    probabilities = torch.softmax(torch.randn(6, 4, 7, 6), dim=0)
    head = (slice(2, 10), slice(10, 38), slice(5, 29))
    findings = Stage1Findings([], head, probabilities)
    full = 1.0 - resize(probabilities[:1], (8, 28, 24))[0].numpy()
    got = findings.foreground_probability((slice(3, 7), slice(14, 30), slice(9, 20)))
    assert got.shape == (4, 16, 11)
    np.testing.assert_allclose(got, full[1:5, 4:20, 4:15], atol=1e-5)


class _BloodFinder(torch.nn.Module):
    """Stage 1 that calls hemorrhage exactly where the input reads as blood (60-90 HU in the brain window, not
    bone in the bone window): a stage 1 whose support of stage 2's findings is known."""

    def __init__(self):
        super().__init__()
        self.device_anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # the cascade asks its device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blood = ((x[:, :1] > 0.7) & (x[:, 1:2] < 0.3)).float()
        logits = torch.full((x.shape[0], 6, *x.shape[2:]), -10.0)
        logits[:, :1] = 10.0 - 20.0 * blood
        logits[:, 1:2] = 20.0 * blood - 10.0
        return logits


def test_the_cascade_drops_what_stage2_alone_finds_against_bone():
    """Stage 1 finds the lesion; stage 2 calls its whole ROI (lesion and margin) SDH, so stage 1's mean
    probability over that one component is low. Against the skull it is dropped at a high minimum support and
    kept at a low one; in the middle of the brain, away from bone, it is kept."""
    cases = {"against the skull": ((1, (5, 11, 32), (2, 3, 5)),), "central": ((1, (5, 32, 32), (2, 3, 4)),)}
    predictor = constant_predictor(Hemorrhage.IPH, Hemorrhage.SDH)
    predictor.networks[1] = _BloodFinder()
    for where, lesions in cases.items():
        image, truth = ct_image((10, 64, 64), lesions=lesions, calcification=False)
        found = predictor.predict(image).labels > 0
        assert found.sum() > 2 * truth.astype(bool).sum() and found[truth > 0].all(), where
        for minimum in (0.05, 0.9):
            kept = predictor.with_inference_settings({"cascade.min_stage1_support_near_bone": minimum})
            expected = where == "central" or minimum == 0.05
            assert kept.predict(image).labels.any() == expected, (where, minimum)


def test_the_cascade_drops_subdural_films_that_hug_the_skull():
    """Stage 1 finds the lesion; stage 2 calls its whole ROI one type. Judged by a depth that no part of the ROI
    reaches (60 mm from bone), the SDH against the skull is a film and is dropped; judged by 1 mm it is kept; so
    are an IPH there (not a film type) and an SDH in the middle of the brain (it does not touch bone)."""
    film = {"cascade.min_film_depth_fraction": 0.5, "cascade.film_depth_mm": 60.0}
    thick = {"cascade.min_film_depth_fraction": 0.5, "cascade.film_depth_mm": 1.0}
    cases = {"against the skull": ((1, (5, 11, 32), (2, 3, 5)),), "central": ((1, (5, 32, 32), (2, 3, 4)),)}
    for where, lesions in cases.items():
        image, _ = ct_image((10, 64, 64), lesions=lesions, calcification=False)
        for kind in (Hemorrhage.SDH, Hemorrhage.IPH):
            predictor = constant_predictor(Hemorrhage.IPH, kind)
            predictor.networks[1] = _BloodFinder()  # the ROI: the lesion and its margin
            assert predictor.predict(image).labels.any(), (where, kind)
            assert predictor.with_inference_settings(thick).predict(image).labels.any(), (where, kind)
            dropped = where == "against the skull" and kind == Hemorrhage.SDH
            assert predictor.with_inference_settings(film).predict(image).labels.any() != dropped, (where, kind)


def test_the_networks_outputs_give_with_other_settings_what_predict_gives():
    """`network_outputs` once, `labels_from` under other rule settings: the labels `predict` gives with them (the
    film rule drops the SDH against the skull in one, keeps it in the other)."""
    image, _ = ct_image((10, 64, 64), lesions=((1, (5, 11, 32), (2, 3, 5)),), calcification=False)
    predictor = constant_predictor(Hemorrhage.IPH, Hemorrhage.SDH)
    predictor.networks[1] = _BloodFinder()
    outputs = predictor.network_outputs(image)
    found = {}
    for depth in (60.0, 1.0):
        changed = predictor.with_inference_settings({"cascade.min_film_depth_fraction": 0.5,
                                                     "cascade.film_depth_mm": depth})
        found[depth] = changed.labels_from(outputs, image)
        assert np.array_equal(found[depth], changed.predict(image).labels), depth
    assert not found[60.0].any() and found[1.0].any()


def test_a_type_prior_changes_the_type_but_not_what_is_hemorrhage():
    probs = torch.zeros(6, 1, 1, 3)
    probs[:, 0, 0, 0] = torch.tensor([0.1, 0.5, 0.4, 0.0, 0.0, 0.0])  # stage 2: IPH, IVH close behind
    probs[:, 0, 0, 1] = torch.tensor([0.1, 0.5, 0.4, 0.0, 0.0, 0.0])
    probs[:, 0, 0, 2] = torch.tensor([0.9, 0.05, 0.05, 0.0, 0.0, 0.0])  # background
    prior = torch.zeros(5, 1, 1, 3)
    prior[:, 0, 0, 0] = torch.tensor([0.2, 0.8, 0.0, 0.0, 0.0])  # stage 1: IVH
    prior[:, 0, 0, 1] = torch.tensor([0.6, 0.4, 0.0, 0.0, 0.0])  # stage 1 agrees with IPH
    prior[:, 0, 0, 2] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    assert hemorrhage_labels(probs, 0.5).ravel().tolist() == [Hemorrhage.IPH, Hemorrhage.IPH, 0]
    assert hemorrhage_labels(probs, 0.5, prior).ravel().tolist() == [Hemorrhage.IVH, Hemorrhage.IPH, 0]


def test_a_prior_among_some_types_only_splits_those():
    """Stage 2 leans SDH over EDH and IPH over both; stage 1 says EDH and IVH. Weighed among SDH and EDH only, the
    prior turns SDH into EDH but cannot make a voxel IVH, nor move one out of the extra-axial types."""
    probs = torch.zeros(6, 1, 1, 2)
    probs[:, 0, 0, 0] = torch.tensor([0.1, 0.0, 0.05, 0.0, 0.5, 0.35])  # stage 2: SDH, EDH close behind
    probs[:, 0, 0, 1] = torch.tensor([0.1, 0.5, 0.1, 0.0, 0.3, 0.0])  # stage 2: IPH, then SDH
    prior = torch.zeros(5, 1, 1, 2)
    prior[:, 0, 0, 0] = torch.tensor([0.0, 0.3, 0.0, 0.1, 0.6])  # stage 1: EDH over SDH
    prior[:, 0, 0, 1] = torch.tensor([0.1, 0.8, 0.0, 0.1, 0.0])  # stage 1: IVH
    extra_axial = (int(Hemorrhage.SDH), int(Hemorrhage.EDH))
    assert hemorrhage_labels(probs, 0.5).ravel().tolist() == [Hemorrhage.SDH, Hemorrhage.IPH]
    assert hemorrhage_labels(probs, 0.5, prior).ravel().tolist() == [Hemorrhage.EDH, Hemorrhage.IVH]
    assert hemorrhage_labels(probs, 0.5, prior, extra_axial).ravel().tolist() == [Hemorrhage.EDH, Hemorrhage.IPH]
    weighed = weigh_types(probs[1:], prior, extra_axial)
    assert torch.allclose(weighed[3:].sum(0), probs[4:].sum(0))  # the extra-axial total is stage 2's
    assert torch.equal(weighed[:3], probs[1:4])
    assert weighed[4, 0, 0, 0] / weighed[3, 0, 0, 0] == pytest.approx((0.35 * 0.6) / (0.5 * 0.1))


def test_a_split_moves_voxels_only_between_its_types_and_only_where_stage2_hesitates():
    """Stage 1 says IVH everywhere, near certain. Split between IPH and IVH with a small exponent, the voxel stage 2
    calls IPH by a hair turns IVH, the one it is sure of stays IPH, and the SAH voxel (IVH second) stays SAH."""
    types = torch.zeros(5, 1, 1, 3)
    types[:, 0, 0, 0] = torch.tensor([0.46, 0.44, 0.1, 0.0, 0.0])  # IPH by a hair
    types[:, 0, 0, 1] = torch.tensor([0.9, 0.05, 0.05, 0.0, 0.0])  # surely IPH
    types[:, 0, 0, 2] = torch.tensor([0.0, 0.4, 0.6, 0.0, 0.0])  # SAH, IVH second
    prior = torch.zeros(5, 1, 1, 3)
    prior[:2] = torch.tensor([0.001, 0.999])[:, None, None, None]
    kind = (types.argmax(0) + 1).numpy().astype(np.uint8)
    assert kind.ravel().tolist() == [Hemorrhage.IPH, Hemorrhage.IPH, Hemorrhage.SAH]
    split_types(kind, types, (int(Hemorrhage.IPH), int(Hemorrhage.IVH)), prior, exponent=0.1)
    assert kind.ravel().tolist() == [Hemorrhage.IVH, Hemorrhage.IPH, Hemorrhage.SAH]
    split_types(kind, types, (int(Hemorrhage.IPH), int(Hemorrhage.IVH)), prior, exponent=1.0)
    assert kind.ravel().tolist() == [Hemorrhage.IVH, Hemorrhage.IVH, Hemorrhage.SAH]  # a full prior overrules


def test_with_the_stage1_type_prior_the_cascade_types_by_both_stages():
    image, _ = ct_image((9, 64, 64))
    predictor = constant_predictor(Hemorrhage.IVH, Hemorrhage.IPH)
    with torch.no_grad():  # stage 2 hesitates between IPH and IVH; stage 1 is sure of IVH
        predictor.networks[2].output_block.conv.conv.bias[Hemorrhage.IVH] = 9.0
    alone = predictor.predict(image).labels
    assert set(np.unique(alone)) == {0, int(Hemorrhage.IPH)}
    predictor.config = dataclasses.replace(
        predictor.config, cascade=dataclasses.replace(predictor.config.cascade, stage1_type_prior=True))
    both = predictor.predict(image).labels
    assert set(np.unique(both)) == {0, int(Hemorrhage.IVH)} and ((both > 0) == (alone > 0)).all()


def test_the_cascade_splits_iph_from_ivh_by_both_stages_when_set():
    """Stage 2 hesitates between IPH and IVH (IPH ahead), stage 1 is sure of IVH: with the prior on for SDH/EDH
    only the voxels stay IPH; with the IPH/IVH split added they turn IVH, the hemorrhage mask unchanged."""
    image, _ = ct_image((9, 64, 64))
    predictor = constant_predictor(Hemorrhage.IVH, Hemorrhage.IPH)
    with torch.no_grad():
        predictor.networks[2].output_block.conv.conv.bias[Hemorrhage.IVH] = 9.0
    prior_only = predictor.with_inference_settings({"cascade.stage1_type_prior": True,
                                                    "cascade.stage1_type_prior_types": ["SDH", "EDH"]})
    alone = prior_only.predict(image).labels
    assert set(np.unique(alone)) == {0, int(Hemorrhage.IPH)}
    split = prior_only.with_inference_settings({"cascade.stage1_type_split_types": ["IPH", "IVH"],
                                                "cascade.stage1_type_split_exponent": 0.1})
    both = split.predict(image).labels
    assert set(np.unique(both)) == {0, int(Hemorrhage.IVH)} and ((both > 0) == (alone > 0)).all()


def test_single_stage_baseline_runs_over_the_whole_head():
    image, _ = ct_image((9, 64, 64))
    prediction = constant_predictor(0, Hemorrhage.IVH).predict_single_stage(image)
    assert prediction.labels.shape == image.hu.shape and (prediction.labels == Hemorrhage.IVH).any()
    assert prediction.rois == []


def test_a_non_volume_is_an_input_error():
    from ichvol.errors import InputError
    from ichvol.geometry import VolumeGeometry

    predictor = constant_predictor(0, 0)
    image, _ = ct_image((9, 64, 64))
    flat = CTImage.__new__(CTImage)
    flat.hu, flat.geometry = np.zeros((64, 64)), image.geometry
    with pytest.raises(InputError, match="3D"):
        predictor.predict(flat)
    assert isinstance(image.geometry, VolumeGeometry)


def test_components_with_a_median_outside_the_blood_range_are_dropped():
    from ichvol.models.postprocess import drop_implausible_components

    hu = np.full((4, 20, 20), 30.0)
    hu[1:3, 2:6, 2:6] = 70.0  # blood
    hu[1:3, 12:16, 12:16] = 400.0  # bone partial volume
    labels = np.zeros(hu.shape, np.uint8)
    labels[1:3, 2:6, 2:6] = Hemorrhage.IPH
    labels[1:3, 12:16, 12:16] = Hemorrhage.EDH
    assert drop_implausible_components(labels, hu, (40.0, 100.0)) == 1
    assert (labels[1:3, 2:6, 2:6] == Hemorrhage.IPH).all() and not labels[:, 10:, 10:].any()


def test_components_smaller_than_the_minimum_volume_are_dropped():
    from ichvol.models.postprocess import drop_small_components

    labels = np.zeros((4, 20, 20), np.uint8)
    labels[1:3, 2:6, 2:6] = Hemorrhage.IPH  # 32 voxels
    labels[1, 12:14, 12:14] = Hemorrhage.SAH  # 4 voxels
    voxel_ml = np.array([0.001, 0.001, 0.002, 0.001])  # the thicker slice 2 weighs double
    assert drop_small_components(labels, voxel_ml, 0.005) == 1
    assert (labels[1:3, 2:6, 2:6] == Hemorrhage.IPH).all() and not labels[:, 10:, 10:].any()
    # 16 voxels at 1 ul + 16 at 2 ul = 0.048 ml: kept at 0.048, dropped above it.
    assert drop_small_components(labels.copy(), voxel_ml, 0.048) == 0
    assert drop_small_components(labels, voxel_ml, 0.049) == 1 and not labels.any()
    assert drop_small_components(labels, voxel_ml, 0.0) == 0


def test_the_cascade_clears_voxels_that_read_as_bone():
    """Stage 2 calls its whole ROI SDH, the margin against the skull included: with `max_voxel_hu` no voxel of
    bone density stays hemorrhage, and the lesion itself does."""
    image, truth = ct_image((10, 64, 64), lesions=((1, (5, 11, 32), (2, 3, 5)),), calcification=False)
    predictor = constant_predictor(Hemorrhage.IPH, Hemorrhage.SDH)
    predictor.networks[1] = _BloodFinder()
    hu = np.asarray(image.hu)
    assert (hu[predictor.predict(image).labels > 0] >= 150).any()
    capped = predictor.with_inference_settings({"cascade.max_voxel_hu": 150.0}).predict(image).labels > 0
    assert not (hu[capped] >= 150).any() and capped[truth > 0].all()
