"""Anatomical post-processing: the cranial cavity gate, and the ROI resolution of stage 2."""

import numpy as np
from model_phantoms import TINY_CONFIG, constant_predictor, ct_image, head, one_torch_thread  # noqa: F401

from ichvol.labels import Hemorrhage
from ichvol.models.cascade import roi_input_shape
from ichvol.models.config import ModelConfig, StageConfig
from ichvol.models.postprocess import intracranial_mask

SPACING = (2.0, 2.0)


def _skull_and_brain(shape):
    z, y, x = np.indices(shape, dtype=float)
    cy, cx = shape[1] / 2, shape[2] / 2
    r = np.sqrt(((y - cy) / (0.42 * shape[1])) ** 2 + ((x - cx) / (0.36 * shape[2])) ** 2)
    return r < 0.88, (r >= 0.88) & (r < 1.0)


def test_the_cavity_is_inside_the_skull_and_excludes_scalp_bone_and_air():
    hu, _ = head((6, 64, 64), lesions=())
    brain, skull = _skull_and_brain(hu.shape)
    mask = intracranial_mask(hu, SPACING)
    assert mask[brain].all()
    # The 1 mm rim reaches at most one 2 mm pixel into the bone; air and everything beyond stay out.
    assert mask[skull].mean() < 0.5
    _, outer = _skull_and_brain((6, 70, 70))
    assert not mask[:, 0, :].any() and not mask[:, :, 0].any()


def test_slices_beyond_the_skull_are_excluded_and_a_gap_in_between_takes_its_neighbours_cavity():
    hu, _ = head((9, 64, 64), lesions=())
    brain, _ = _skull_and_brain(hu.shape)
    hu = hu.astype(np.float32)
    hu[0] = np.where(brain[0], 40.0, -1000.0)  # neck: soft tissue, no skull ring
    hu[4, :, 32:] = np.where(brain[4, :, 32:], 40.0, -1000.0)  # craniectomy: the ring is open on one side
    hu[4, :, 32:][~brain[4, :, 32:] & (hu[3, :, 32:] > 500)] = 40.0  # scalp where the bone was
    mask = intracranial_mask(hu, SPACING)
    assert not mask[0].any()
    assert np.array_equal(mask[4], mask[3] | mask[5])
    assert mask[4][brain[4]].all()
    assert mask[2][brain[2]].all() and not mask[2].all()


def test_an_image_without_any_skull_is_not_gated():
    hu = np.full((4, 32, 32), 40.0, np.float32)
    assert intracranial_mask(hu, SPACING).all()


def test_the_predictor_clears_hemorrhage_outside_the_cranial_cavity():
    image, _ = ct_image((9, 70, 58), calcification=False)
    labels = constant_predictor(Hemorrhage.IPH, Hemorrhage.SDH, gate=True).predict(image).labels
    brain, skull = _skull_and_brain(image.hu.shape)
    assert (labels[brain] == Hemorrhage.SDH).mean() > 0.95
    outside = ~brain & ~skull
    assert not labels[outside].any()


def test_stage2_keeps_fine_pixels_on_large_rois_when_asked():
    stage = StageConfig(**{**ModelConfig.from_dict(TINY_CONFIG).stage2.__dict__})
    box = (slice(2, 12), slice(0, 200), slice(0, 200))  # 100 mm at 0.5 mm pixels
    assert roi_input_shape(box, stage, (0.5, 0.5)) == (10, 32, 32)  # resized to the patch (3.1 mm pixels)
    fine = StageConfig(**{**stage.__dict__, "roi_max_spacing_mm": 1.0})
    assert roi_input_shape(box, fine, (0.5, 0.5)) == (10, 100, 100)
    small = (slice(0, 4), slice(0, 20), slice(0, 20))  # 10 mm: never below the patch size
    assert roi_input_shape(small, fine, (0.5, 0.5)) == (4, 32, 32)
