"""Anatomical post-processing: the cranial cavity gate, and the ROI resolution of stage 2."""

import numpy as np
import pytest
import torch
from model_phantoms import TINY_CONFIG, constant_predictor, ct_image, geometry, head, one_torch_thread  # noqa: F401
from scipy import ndimage

from ichvol.errors import ConfigError, NotAHeadCTError
from ichvol.image import CTImage
from ichvol.labels import Hemorrhage
from ichvol.models.cascade import Stage1Findings, roi_input_shape
from ichvol.models.config import ModelConfig, StageConfig
from ichvol.models.postprocess import (
    SIDE_MIN_ML,
    drop_thin_films,
    drop_unsupported_components,
    grow_rim,
    intracranial_mask,
    lacks_cranial_cavity,
    retype_detached_extra_axial,
    side_contrast_hu,
)
from ichvol.models.predictor import apply_rules

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


def _air_phantom(shape):
    """A head phantom as scanners' QA phantoms are: a skull-like shell around air (about -200 HU) holding
    blood-dense solid inserts."""
    hu, _ = head(shape, lesions=(), calcification=False)
    brain, _ = _skull_and_brain(shape)
    hu = hu.astype(np.float32)
    hu[brain] = -200.0
    hu[:, 28:36, 24:32] = 95.0
    return hu


def _skull_stripped(shape):
    hu, _ = head(shape, lesions=(), calcification=False)
    brain, _ = _skull_and_brain(shape)
    return np.where(brain, hu, -1000).astype(np.float32)


def test_a_head_has_a_cranial_cavity_and_phantoms_or_skull_stripped_images_have_none():
    hu, _ = head((7, 64, 64), lesions=())
    assert not lacks_cranial_cavity(hu, SPACING)
    top_only = hu.astype(np.float32)
    top_only[:6] = -1000.0  # the cavity in one slice, far from the middle, is enough
    assert not lacks_cranial_cavity(top_only, SPACING)
    assert lacks_cranial_cavity(_air_phantom((7, 64, 64)), SPACING)
    assert lacks_cranial_cavity(_skull_stripped((7, 64, 64)), SPACING)
    assert lacks_cranial_cavity(np.full((3, 32, 32), 40.0, np.float32), SPACING)
    # Pixels too coarse to follow the skull are not judged.
    assert not lacks_cranial_cavity(_air_phantom((7, 64, 64)), (3.5, 3.5))


@pytest.mark.parametrize("make", [_air_phantom, _skull_stripped], ids=["air-phantom", "skull-stripped"])
def test_the_predictor_refuses_an_image_without_a_cranial_cavity_unless_told_not_to(make):
    head_image, _ = ct_image((7, 64, 64), lesions=())
    image = CTImage(make(head_image.hu.shape), head_image.geometry)
    with pytest.raises(NotAHeadCTError, match="no cranial cavity found"):
        constant_predictor(Hemorrhage.IPH, Hemorrhage.IPH).predict(image)
    predictor = constant_predictor(Hemorrhage.IPH, Hemorrhage.IPH)
    predictor.config = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {
        **TINY_CONFIG["cascade"], "intracranial_gate": False, "require_cranial_cavity": False}})
    assert (predictor.predict(image).labels == Hemorrhage.IPH).any()


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


def test_the_rim_grows_one_pixel_in_plane_into_dense_voxels_only():
    """A 5x5 SDH in 70 HU, with 1200 HU bone above it, 400 HU (bone partial volume) below and 20 HU brain to
    its left: the 4-neighbour ring joins where 45-800 HU (below and right), with the neighbour's type; nothing
    on the slices above and below, and nothing where there is no hemorrhage."""
    hu = np.full((3, 12, 12), 70.0, np.float32)
    hu[:, :, 0:4] = 20.0
    hu[:, 0:3, :] = 1200.0
    hu[:, 8:, :] = 400.0
    labels = np.zeros(hu.shape, np.uint8)
    labels[1, 3:8, 4:9] = Hemorrhage.SDH
    labels[1, 5, 6] = Hemorrhage.EDH  # inside: no effect on the ring's type
    before = labels.copy()
    added = grow_rim(labels, hu, (45.0, 800.0))
    expected = np.zeros(hu.shape, bool)
    expected[1, 8, 4:9] = True  # 400 HU
    expected[1, 3:8, 9] = True  # 70 HU
    ring = (labels > 0) & (before == 0)
    assert added == expected.sum() and np.array_equal(ring, expected)
    assert (labels[ring] == Hemorrhage.SDH).all()
    assert grow_rim(np.zeros_like(labels), hu, (45.0, 800.0)) == 0


def test_the_rim_grows_only_around_the_types_asked_for():
    hu = np.full((1, 12, 12), 70.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[0, 1:4, 1:4] = Hemorrhage.IPH
    labels[0, 7:10, 7:10] = Hemorrhage.SDH
    before = labels.copy()
    assert grow_rim(labels, hu, (45.0, 800.0), types=(int(Hemorrhage.SDH), int(Hemorrhage.EDH))) == 12
    assert np.array_equal(labels[:, :6, :6], before[:, :6, :6])
    assert (labels[0, 6:11, 6:11] > 0).sum() == 9 + 12


def test_rim_growth_types_must_be_hemorrhage_types():
    data = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {"rim_growth_types": ["SDH", "EDH"]}})
    assert data.cascade.rim_growth_labels == (int(Hemorrhage.SDH), int(Hemorrhage.EDH))
    with pytest.raises(ConfigError, match="unknown hemorrhage type 'BLOOD'"):
        ModelConfig.from_dict({**TINY_CONFIG, "cascade": {"rim_growth_types": ["SDH", "blood"]}})


def test_components_against_bone_that_stage1_does_not_support_on_average_are_dropped():
    """Stage-1 support 0.9 over the left half, 0.1 over the right; bone along the top row. Against bone: one
    component on the left, one on the right and one straddling both (mean 0.5). Away from bone, one on the
    right: stage 2 alone is trusted there."""
    support = np.full((2, 10, 20), 0.9, np.float32)
    support[:, :, 10:] = 0.1
    hu = np.full(support.shape, 40.0, np.float32)
    hu[:, 0, :] = 1000.0
    labels = np.zeros(support.shape, np.uint8)
    labels[1, 1:3, 1:4] = Hemorrhage.IPH  # left, against bone
    labels[1, 1:3, 14:17] = Hemorrhage.SDH  # right, against bone
    labels[1, 6:8, 14:17] = Hemorrhage.IVH  # right, 4 mm from bone
    labels[0, 1, 7:13] = Hemorrhage.EDH  # straddling, against bone
    seen = []

    def lookup(box):
        seen.append(box)
        return support[box]

    def dropped(min_mean):
        kept = labels.copy()
        count = drop_unsupported_components(kept, hu, (1.0, 1.0), lookup, min_mean)
        gone = {int(t) for t in np.unique(labels[(labels > 0) & (kept == 0)])}
        assert count == len(gone) and np.array_equal(kept[kept > 0], labels[kept > 0])
        return gone

    assert dropped(0.45) == {Hemorrhage.SDH}
    assert len(seen) == 4 and all(support[box].shape == labels[box].shape for box in seen)
    assert dropped(0.55) == {Hemorrhage.SDH, Hemorrhage.EDH}
    assert dropped(0.95) == {Hemorrhage.SDH, Hemorrhage.EDH, Hemorrhage.IPH}
    far = labels.copy()
    far[:, 0, :] = 0
    hu[:, 0, :] = 40.0
    hu[:, 9, :] = 1000.0  # bone now along the bottom row, two pixels below the IVH
    assert drop_unsupported_components(far, hu, (1.0, 1.0), lookup, 0.45) == 0
    assert drop_unsupported_components(far, hu, (0.5, 0.5), lookup, 0.45) == 1  # 1 mm is 2 pixels here
    assert not (far == Hemorrhage.IVH).any()
    assert drop_unsupported_components(np.zeros_like(labels), hu, (1.0, 1.0), lookup, 0.5) == 0


def test_thin_extra_axial_films_against_bone_are_dropped_and_thicker_collections_kept():
    """Bone along the left edge (columns 0-1) at 0.5 mm pixels. SDH films 1.5 mm and 4 mm thick against it, an
    IPH 1.5 mm thick against it, and a 1.5 mm EDH sheet away from bone; only the thin SDH against bone goes."""
    hu = np.full((2, 40, 40), 40.0, np.float32)
    hu[:, :, 0:2] = 1200.0
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 1:9, 2:5] = Hemorrhage.SDH  # 3 pixels: 0.5-1.5 mm from bone
    labels[:, 12:20, 2:10] = Hemorrhage.SDH  # 8 pixels: half of it 2 mm or more from bone
    labels[:, 24:30, 2:5] = Hemorrhage.IPH
    labels[:, 34:38, 20:23] = Hemorrhage.EDH  # 9 mm from bone
    before = labels.copy()
    assert drop_thin_films(labels, hu, (0.5, 0.5), (int(Hemorrhage.SDH), int(Hemorrhage.EDH)), 2.0, 0.15) == 1
    assert not labels[:, 1:9].any()
    assert np.array_equal(labels[:, 9:], before[:, 9:])
    # Distances are in mm: at 1 mm pixels the first film reaches 2-3 mm from bone, and is kept.
    again = before.copy()
    assert drop_thin_films(again, hu, (1.0, 1.0), (int(Hemorrhage.SDH),), 2.0, 0.15) == 0
    # A film is judged by its most common type: a mostly-IPH component with some SDH in it stays.
    mixed = before.copy()
    mixed[:, 24:26, 2:5] = Hemorrhage.SDH
    assert drop_thin_films(mixed, hu, (0.5, 0.5), (int(Hemorrhage.SDH),), 2.0, 0.15) == 1
    assert (mixed[:, 24:30] > 0).sum() == (before[:, 24:30] > 0).sum()
    assert drop_thin_films(np.zeros_like(labels), hu, (0.5, 0.5), (int(Hemorrhage.SDH),), 2.0, 0.15) == 0


def test_film_types_must_be_hemorrhage_types():
    data = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {"film_types": ["SDH"], "min_film_depth_fraction": 0.1}})
    assert data.cascade.film_labels == (int(Hemorrhage.SDH),)
    with pytest.raises(ConfigError, match="unknown hemorrhage type"):
        ModelConfig.from_dict({**TINY_CONFIG, "cascade": {"film_types": ["subdural"]}})


def test_extra_axial_types_away_from_bone_take_the_type_around_them():
    """Bone along the left edge. An IPH whose core the networks typed EDH, 10 mm from bone: the core becomes IPH.
    An SDH against bone with IPH beside it, and a lone SDH sheet bordered by no other type (as along the falx),
    keep their types. Only types change, never the hemorrhage mask."""
    extra_axial = (int(Hemorrhage.SDH), int(Hemorrhage.EDH))
    hu = np.full((3, 40, 40), 40.0, np.float32)
    hu[:, :, 0:2] = 1200.0
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 10:20, 20:30] = Hemorrhage.IPH
    labels[1, 13:17, 23:27] = Hemorrhage.EDH  # inside the IPH
    labels[:, 24:30, 2:6] = Hemorrhage.SDH  # against bone
    labels[:, 24:30, 6:9] = Hemorrhage.IPH
    labels[:, 34:38, 20:23] = Hemorrhage.SDH  # alone, 9 mm from bone
    before = labels.copy()
    assert retype_detached_extra_axial(labels, hu, (1.0, 1.0), extra_axial) == 1
    assert (labels[:, 10:20, 20:30] == Hemorrhage.IPH).all()
    changed = labels != before
    assert changed.sum() == 16 and np.array_equal(labels > 0, before > 0)
    # Nothing typed extra-axial, or no hemorrhage at all: nothing to do.
    assert retype_detached_extra_axial(np.where(before == Hemorrhage.IPH, before, 0), hu, (1.0, 1.0), extra_axial) == 0
    assert retype_detached_extra_axial(np.zeros_like(labels), hu, (1.0, 1.0), extra_axial) == 0
    # With the IPH mostly IVH around the core, the core takes the most common bordering type.
    mostly_ivh = before.copy()
    mostly_ivh[:, 10:20, 20:30][before[:, 10:20, 20:30] == Hemorrhage.IPH] = Hemorrhage.IVH
    mostly_ivh[1, 12, 23:27] = Hemorrhage.IPH
    assert retype_detached_extra_axial(mostly_ivh, hu, (1.0, 1.0), extra_axial) == 1
    assert mostly_ivh[1, 15, 25] == Hemorrhage.IVH


def test_the_predictor_retypes_detached_extra_axial_blood_only_when_asked():
    """Stage 2 calls everything EDH, so no other type borders it and the types stay; the setting never
    changes the hemorrhage mask."""
    image, _ = ct_image((6, 64, 64))
    plain = constant_predictor(int(Hemorrhage.IPH), int(Hemorrhage.EDH), gate=True)
    asked = plain.with_inference_settings({"cascade.retype_detached_extra_axial": True})
    found = asked.predict(image).labels
    assert asked.config.cascade.retype_detached_extra_axial and found.any()
    assert np.array_equal(plain.predict(image).labels, found)


def _head_with_inner_bands(left_hu: float, right_hu: float, rows: slice = slice(30, 66)):
    """A 0.5 mm head (skull ring, brain of 30 HU) whose band within 2 mm of the inner table reads `left_hu` on the
    left and `right_hu` on the right, over `rows`; and the left band there as an SDH film (labels)."""
    brain, skull = _skull_and_brain((5, 96, 96))
    hu = np.where(skull, 1000.0, np.where(brain, 30.0, -1000.0)).astype(np.float32)
    near = np.stack([ndimage.distance_transform_edt(~plane) for plane in skull]) * 0.5 < 2.0
    x = np.indices(hu.shape)[2]
    band = brain & near
    band[:, : rows.start] = band[:, rows.stop :] = False
    hu[band & (x < 48)] = left_hu
    hu[band & (x >= 48)] = right_hu
    labels = np.where(band & (x < 48), np.uint8(Hemorrhage.SDH), np.uint8(0))
    return hu, labels


def test_the_side_contrast_compares_the_band_inside_the_inner_table_with_the_other_side():
    for left, right, expected in ((70.0, 30.0, 40.0), (70.0, 70.0, 0.0), (30.0, 70.0, -40.0)):
        hu, labels = _head_with_inner_bands(left, right)
        cavity = intracranial_mask(hu, (0.5, 0.5))
        box = ndimage.find_objects(labels)[Hemorrhage.SDH - 1]
        assert side_contrast_hu(hu, cavity, labels[box] > 0, box, (0.5, 0.5)) == pytest.approx(expected)
    # No bone in the slices (nothing to compare against): no contrast.
    box = ndimage.find_objects(labels)[Hemorrhage.SDH - 1]
    flat = np.full(hu.shape, 30.0, np.float32)
    assert side_contrast_hu(flat, np.ones(hu.shape, bool), labels[box] > 0, box, (0.5, 0.5)) is None


def test_a_thin_film_that_brightens_one_side_only_is_kept_when_asked():
    """The film rule drops the left band (it hugs the skull). With `min_side_contrast_hu`, it stays when the band
    reads brighter than the right one by that much, and goes when both sides are alike or when it is smaller than
    SIDE_MIN_ML; the support rule gets the same exception."""
    data = ModelConfig.from_dict({**TINY_CONFIG, "cascade": {
        "min_film_depth_fraction": 0.15, "film_types": ["SDH"], "intracranial_gate": True}})
    grid = geometry((5, 96, 96), spacing=(0.5, 0.5), slice_step=5.0)
    background = torch.zeros(6, 5, 96, 96)
    background[0] = 1.0  # stage 1 supports nothing
    nothing = Stage1Findings([], (slice(0, 5), slice(0, 96), slice(0, 96)), background)

    def kept(left, right, settings, rows=slice(30, 66)):
        hu, labels = _head_with_inner_bands(left, right, rows)
        apply_rules(labels, hu, grid, nothing, data.with_inference_settings(settings).cascade)
        return bool(labels.any())

    one_sided = {"cascade.min_side_contrast_hu": 8.0}
    hu, labels = _head_with_inner_bands(70.0, 30.0)
    assert (labels > 0).sum() * grid.voxel_volumes_ml()[0] > SIDE_MIN_ML
    assert not kept(70.0, 30.0, {})
    assert kept(70.0, 30.0, one_sided)
    assert not kept(70.0, 66.0, one_sided)
    assert not kept(70.0, 30.0, one_sided, rows=slice(44, 50))  # a speck under SIDE_MIN_ML
    unsupported = {**one_sided, "cascade.min_film_depth_fraction": 0.0, "cascade.min_stage1_support_near_bone": 0.5}
    assert kept(70.0, 30.0, unsupported)
    assert not kept(70.0, 66.0, unsupported)
