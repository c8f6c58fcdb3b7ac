"""End to end with engineer A's synthetic studies: the chosen series, its geometry and the measured
volumes read back from DICOM match what the generator drew (B)."""

from __future__ import annotations

import numpy as np
import pytest

from ichvol.dicom import load_ct_image, read_study
from ichvol.measure import measure_labels
from ichvol.synth import SynthOptions, generate_case, write_dicom_study


@pytest.mark.parametrize(("seed", "tilted"), [(14, False), (20, True)])  # both with non-target series
def test_synthetic_study_reads_back_with_geometry_and_volumes(tmp_path, seed, tilted):
    case = generate_case(seed, SynthOptions(slices=10, size=48))
    assert (case.geometry.tilt_degrees > 1.0) == tilted, "the generator changed: pick another seed"
    write_dicom_study(case, tmp_path, f"case{seed}", seed)
    scan = read_study(tmp_path)
    image, selection = load_ct_image(tmp_path)
    assert len(scan.series) >= 3 and len(selection.rejected) == len(scan.series) - 1
    assert image.hu.dtype == np.int16
    np.testing.assert_array_equal(image.hu, case.hu)
    np.testing.assert_allclose(image.geometry.positions, case.geometry.positions, atol=1e-3)
    assert image.geometry.tilt_degrees == pytest.approx(case.geometry.tilt_degrees, abs=1e-3)
    measured = measure_labels(case.labels, image.geometry)
    truth = case.truth["volumes_ml"]
    assert {t.name for t in measured.per_type} == set(truth)
    for hemorrhage, measurement in measured.per_type.items():
        assert measurement.volume_ml == pytest.approx(truth[hemorrhage.name], rel=1e-3)
