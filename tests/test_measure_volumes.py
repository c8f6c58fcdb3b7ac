"""Volumes and ABC/2 on analytic shapes with known answers, tilt and uneven gaps, properties (B)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ichvol.errors import InputError
from ichvol.geometry import VolumeGeometry
from ichvol.labels import Hemorrhage
from ichvol.measure import measure_binary, measure_labels


def grid(slices: int, rows: int, columns: int, spacing=(0.5, 0.5), gaps=None, tilt_degrees=0.0):
    """Slices stepping along z (gaps in mm along the table); a tilt tips the slice plane, as real gantries."""
    steps = np.full(slices - 1, 2.0) if gaps is None else np.asarray(gaps, dtype=float)
    z = np.concatenate([[0.0], np.cumsum(steps)])
    positions = np.stack([np.zeros(slices), np.zeros(slices), z], axis=1)
    t = np.radians(tilt_degrees)
    return VolumeGeometry(positions, np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(t), -np.sin(t)]),
                          spacing, rows, columns)


def test_ellipsoid_volume_and_abc2_match_the_analytic_values():
    geometry = grid(40, 160, 160, spacing=(0.5, 0.5), gaps=np.full(39, 1.0))
    z, y, x = np.mgrid[:40, :160, :160]
    ra, rb, rc = 30.0, 20.0, 12.0  # semi-axes in mm along x, y, z
    inside = ((x - 80) * 0.5 / ra) ** 2 + ((y - 80) * 0.5 / rb) ** 2 + ((z - 20) * 1.0 / rc) ** 2 <= 1
    labels = inside.astype(np.uint8) * Hemorrhage.IPH
    result = measure_labels(labels, geometry)
    true_ml = 4 / 3 * np.pi * ra * rb * rc / 1000
    iph = result.per_type[Hemorrhage.IPH]
    assert iph.volume_ml == pytest.approx(true_ml, rel=0.02)
    (lesion,) = iph.lesions
    # Diameters measured over pixel extents: at most one pixel diagonal / one slice more than the axes.
    assert 2 * ra <= lesion.abc2.a_mm <= 2 * ra + 1.0
    assert 2 * rb <= lesion.abc2.b_mm <= 2 * rb + 1.0
    assert 2 * rc <= lesion.abc2.c_mm <= 2 * rc + 1.0
    # ABC/2 approximates 4/3 pi abc with pi ~ 3: close to the true volume.
    assert lesion.abc2.volume_ml == pytest.approx(true_ml, rel=0.08)
    assert lesion.abc2.volume_kothari_ml < lesion.abc2.volume_ml
    assert result.classification() == "IPH" and result.total_ml == pytest.approx(iph.volume_ml)


def test_box_gives_exact_volume_and_abc2():
    geometry = grid(12, 32, 32, spacing=(0.5, 0.5))
    labels = np.zeros(geometry.shape, np.uint8)
    labels[3:9, 10:14, 5:15] = Hemorrhage.SDH  # 6 slices x 2 mm, 2 mm x 5 mm in plane
    (lesion,) = measure_labels(labels, geometry).per_type[Hemorrhage.SDH].lesions
    assert lesion.volume_ml == pytest.approx(5 * 2 * 12 / 1000)
    assert lesion.abc2.a_mm == pytest.approx(np.hypot(5, 2))  # greatest diameter: the diagonal
    assert lesion.abc2.b_mm == pytest.approx(2 * 5 * 2 / np.hypot(5, 2))
    assert lesion.abc2.c_mm == pytest.approx(12.0) and lesion.abc2.c_kothari_mm == pytest.approx(12.0)
    assert lesion.abc2.volume_ml == pytest.approx(lesion.volume_ml)
    assert lesion.slices == (3, 8)


def test_tilted_grid_gives_the_volume_of_the_untilted_one():
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[2:8, 5:15, 5:12] = Hemorrhage.EDH
    tilted = grid(10, 20, 20, gaps=np.full(9, 5.0), tilt_degrees=20.0)
    straight = grid(10, 20, 20, gaps=np.full(9, 5.0 * np.cos(np.radians(20.0))))
    a = measure_labels(labels, tilted).per_type[Hemorrhage.EDH]
    b = measure_labels(labels, straight).per_type[Hemorrhage.EDH]
    assert a.volume_ml == pytest.approx(b.volume_ml)
    assert a.volume_ml == pytest.approx(6 * 10 * 7 * 0.25 * 5 * np.cos(np.radians(20.0)) / 1000)
    assert a.abc2_ml == pytest.approx(b.abc2_ml) and a.abc2_kothari_ml == pytest.approx(b.abc2_kothari_ml)


def test_uneven_gaps_use_each_slice_slab():
    gaps = [2.0, 2.0, 5.0, 5.0, 3.0]
    geometry = grid(6, 8, 8, spacing=(1.0, 1.0), gaps=gaps)
    labels = np.zeros(geometry.shape, np.uint8)
    labels[:, 3, 3] = Hemorrhage.IVH
    lesion = measure_labels(labels, geometry).per_type[Hemorrhage.IVH].lesions[0]
    slabs = [2.0, 2.0, 3.5, 5.0, 4.0, 3.0]  # half the gap to each neighbour, ends take their one gap
    assert lesion.volume_ml == pytest.approx(sum(slabs) / 1000)
    assert lesion.abc2.c_mm == pytest.approx(sum(slabs))


def test_kothari_weights_on_a_cone():
    geometry = grid(7, 20, 20, spacing=(1.0, 1.0))
    labels = np.zeros(geometry.shape, np.uint8)
    # areas 100, 81, 49, 25, 16: fractions 1, 0.81, 0.49, 0.25, 0.16 -> weights 1, 1, 0.5, 0.5, 0
    for z, side in zip(range(1, 6), (10, 9, 7, 5, 4), strict=True):
        labels[z, 5:5 + side, 5:5 + side] = Hemorrhage.SAH
    lesion = measure_labels(labels, geometry).per_type[Hemorrhage.SAH].lesions[0]
    assert lesion.abc2.c_mm == pytest.approx(5 * 2.0)
    assert lesion.abc2.c_kothari_mm == pytest.approx(3 * 2.0)
    assert lesion.abc2.a_mm == pytest.approx(10 * np.sqrt(2))  # measured on the slice of largest area


def test_single_voxel_gets_sensible_numbers():
    geometry = grid(5, 10, 10, spacing=(0.4, 0.6))
    labels = np.zeros(geometry.shape, np.uint8)
    labels[2, 4, 4] = Hemorrhage.IPH
    lesion = measure_labels(labels, geometry).per_type[Hemorrhage.IPH].lesions[0]
    voxel_ml = 0.4 * 0.6 * 2.0 / 1000
    assert lesion.volume_ml == pytest.approx(voxel_ml)
    assert lesion.abc2.a_mm == pytest.approx(np.hypot(0.4, 0.6)) and lesion.abc2.b_mm > 0.3
    assert lesion.abc2.volume_ml == pytest.approx(voxel_ml)


def test_lesions_per_type_sorted_and_binary_merge():
    geometry = grid(10, 30, 30)
    labels = np.zeros(geometry.shape, np.uint8)
    labels[1:3, 2:4, 2:4] = Hemorrhage.IPH  # small
    labels[5:9, 10:20, 10:20] = Hemorrhage.IPH  # large
    labels[5:9, 20:24, 10:20] = Hemorrhage.IVH  # touches the large IPH
    labels[9, 29, 29] = Hemorrhage.IPH  # a lone voxel in the corner
    result = measure_labels(labels, geometry)
    iph = result.per_type[Hemorrhage.IPH]
    assert len(iph.lesions) == 3
    volumes = [les.volume_ml for les in iph.lesions]
    assert volumes == sorted(volumes, reverse=True)
    assert iph.largest.slices == (5, 8)
    assert result.classification() == "IPH+IVH"
    merged = measure_binary(labels, geometry)
    assert merged.volume_ml == pytest.approx(result.total_ml)
    assert len(merged.lesions) == 3  # the IPH and IVH that touch form one lesion
    assert measure_binary(np.zeros_like(labels), geometry) is None
    assert measure_labels(np.zeros_like(labels), geometry).classification() == "none"


def test_bad_label_maps_are_input_errors():
    geometry = grid(4, 8, 8)
    with pytest.raises(InputError, match="shape"):
        measure_labels(np.zeros((4, 8, 9), np.uint8), geometry)
    with pytest.raises(InputError, match="0..5"):
        measure_labels(np.full((4, 8, 8), 7, np.uint8), geometry)


def test_large_label_map_is_fast():
    geometry = grid(40, 512, 512)
    z, y, x = np.ogrid[:40, :512, :512]
    labels = np.zeros(geometry.shape, np.uint8)
    labels[((z - 20) * 4) ** 2 + ((y - 200) * 0.5) ** 2 + ((x - 200) * 0.5) ** 2 < 30**2] = Hemorrhage.IPH
    labels[((z - 10) * 4) ** 2 + ((y - 350) * 0.5) ** 2 + ((x - 300) * 0.5) ** 2 < 15**2] = Hemorrhage.IVH
    labels[5:7, 100:103, 400:480] = Hemorrhage.SAH
    labels[20:30, 50:60, 300:310] = Hemorrhage.SDH
    labels[::7, ::50, ::50] = Hemorrhage.EDH  # many one-voxel lesions
    start = time.process_time()  # CPU time: other jobs on a shared machine do not count
    result = measure_labels(labels, geometry)
    assert time.process_time() - start < 1.0
    assert len(result.per_type) == 5


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.uint8, (6, 12, 12), elements=st.sampled_from([0, 0, 0, 1, 2])),
       st.floats(0.3, 1.0), st.floats(1.0, 5.0))
def test_properties_of_random_label_maps(labels, pixel, slice_gap):
    geometry = grid(6, 12, 12, spacing=(pixel, pixel), gaps=np.full(5, slice_gap))
    result = measure_labels(labels, geometry)
    voxel_ml = pixel * pixel * slice_gap / 1000
    for value in (1, 2):
        count = int((labels == value).sum())
        if count == 0:
            assert Hemorrhage(value) not in result.per_type
            continue
        measurement = result.per_type[Hemorrhage(value)]
        assert measurement.volume_ml == pytest.approx(count * voxel_ml)
        assert sum(les.volume_ml for les in measurement.lesions) == pytest.approx(measurement.volume_ml)
        for lesion in measurement.lesions:
            abc = lesion.abc2
            assert abc.a_mm >= abc.b_mm * (1 - 1e-9) and abc.b_mm > 0
            assert abc.a_mm >= pixel * np.sqrt(2) * (1 - 1e-9)
            assert slice_gap * (1 - 1e-9) <= abc.c_kothari_mm <= abc.c_mm * (1 + 1e-9)
            assert abc.c_mm == pytest.approx((lesion.slices[1] - lesion.slices[0] + 1) * slice_gap)
    # Moving the map in plane changes nothing; a 90-degree in-plane rotation keeps A, B (square pixels).
    larger = grid(6, 16, 16, spacing=(pixel, pixel), gaps=np.full(5, slice_gap))
    here, there = np.zeros(larger.shape, np.uint8), np.zeros(larger.shape, np.uint8)
    here[:, :12, :12] = labels
    there[:, 3:15, 2:14] = labels
    assert measure_labels(here, larger).to_dict() == measure_labels(there, larger).to_dict()
    assert measure_labels(here, larger).total_abc2_ml == pytest.approx(result.total_abc2_ml)
    rotated = measure_labels(np.ascontiguousarray(np.rot90(labels, axes=(1, 2))), geometry)
    assert rotated.total_abc2_ml == pytest.approx(result.total_abc2_ml)
