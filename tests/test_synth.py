"""Synthetic head CT: determinism, truth volumes, tissue HU, lesion placement, tilt, DICOM validity, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy.ndimage import binary_dilation

from ichvol.errors import InputError
from ichvol.geometry import VolumeGeometry
from ichvol.labels import Hemorrhage
from ichvol.nifti import read_volume
from ichvol.synth import SynthOptions, generate_case, label_volumes_ml, write_dataset, write_dicom_study
from ichvol.synth.case import simulate
from ichvol.synth.dicom_writer import StudyPlan

SMALL = dict(slices=12, size=128)


def only(*types: Hemorrhage, **kw) -> SynthOptions:
    return SynthOptions(types=types, p_no_hemorrhage=0.0, **{**SMALL, **kw})


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_case_and_different_seed_different_case():
    a, b, c = (generate_case(s, SynthOptions(**SMALL)) for s in (11, 11, 12))
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert a.truth == b.truth
    assert not np.array_equal(a.hu, c.hu)


def test_dataset_bytes_are_reproducible(tmp_path):
    options = SynthOptions(**SMALL)
    ids = write_dataset(tmp_path / "one", 2, 5, ("dicom", "nifti"), options)
    write_dataset(tmp_path / "two", 2, 5, ("dicom", "nifti"), options, workers=2)  # bytes independent of workers
    assert ids == ["case0000", "case0001"]
    one, two = files_of(tmp_path / "one"), files_of(tmp_path / "two")
    assert one.keys() == two.keys() and one == two
    assert {"images/case0000.nii.gz", "labels/case0001.nii.gz", "truth/case0001.json"} <= one.keys()
    other = files_of(write_dataset(tmp_path / "three", 1, 6, ("nifti",), options) and tmp_path / "three")
    assert other["images/case0000.nii.gz"] != one["images/case0000.nii.gz"]


def test_truth_volumes_match_the_label_map(tmp_path):
    write_dataset(tmp_path, 3, 21, ("nifti",), SynthOptions(p_no_hemorrhage=0.0, **SMALL))
    for case in ("case0000", "case0001", "case0002"):
        truth = json.loads((tmp_path / "truth" / f"{case}.json").read_text())
        labels, geometry = read_volume(tmp_path / "labels" / f"{case}.nii.gz")
        image = nib.load(str(tmp_path / "images" / f"{case}.nii.gz"))
        assert image.get_data_dtype() == np.int16 and labels.dtype == np.uint8
        assert truth["types"], "p_no_hemorrhage=0 must give hemorrhage"
        voxel_ml = geometry.voxel_volumes_ml()
        for name, ml in truth["volumes_ml"].items():
            counted = float((labels == Hemorrhage[name]).sum(axis=(1, 2)) @ voxel_ml)
            assert counted == pytest.approx(ml, rel=1e-4)
        assert truth["total_ml"] == pytest.approx(sum(truth["volumes_ml"].values()), rel=1e-6)
        assert truth["classification"] == "+".join(truth["types"])
        assert set(np.unique(labels)) - {0} == {Hemorrhage[n].value for n in truth["types"]}


def test_truth_uses_true_voxel_volume_with_tilt_and_gaps():
    case = generate_case(3, SynthOptions(types=(Hemorrhage.SDH,), p_no_hemorrhage=0.0, size=128))
    g = case.geometry
    # Rebuild the same grid with uneven gaps: the volume must follow the per-slice thickness.
    gaps = np.full(g.shape[0] - 1, 5.0)
    gaps[: g.shape[0] // 3] = 2.5
    positions = g.positions[0] + np.concatenate([[0.0], np.cumsum(gaps)])[:, None] * np.array([0, 0, 1.0])
    uneven = VolumeGeometry(positions, g.row_cosine, g.col_cosine, g.pixel_spacing, g.rows, g.columns)
    per_slice = (case.labels == Hemorrhage.SDH).sum(axis=(1, 2))
    assert label_volumes_ml(case.labels, uneven)["SDH"] == pytest.approx(float(per_slice @ uneven.voxel_volumes_ml()))


def test_tissue_hounsfield_units_are_plausible():
    case, anatomy = simulate(4, SynthOptions(p_no_hemorrhage=1.0, **SMALL))
    hu = case.hu
    assert np.median(hu[anatomy.hu < -900]) < -950  # air
    assert 15 < np.median(hu[anatomy.brain]) < 45  # gray and white matter
    ventricles = anatomy.all_ventricles
    assert ventricles.sum() > 50
    assert -5 < np.median(hu[ventricles]) < 20  # CSF
    assert hu.max() > 900  # cortical bone
    noise = np.std(hu[anatomy.brain].astype(float) - anatomy.hu[anatomy.brain])
    assert 2.0 < noise < 12.0
    assert case.truth["types"] == [] and case.truth["classification"] == "none" and not case.labels.any()


def test_blood_is_dense():
    for kind in Hemorrhage:
        case = generate_case(31, only(kind))
        core = case.labels == kind
        assert core.sum() > 0, kind
        assert 45 < np.median(case.hu[core]) < 95, kind


def test_no_voxel_that_reads_as_bone_is_labelled_blood():
    # The scanner blur spreads the inner table into the first voxels of a subdural or epidural collection;
    # those read as bone (and the slab average of a slice that cuts the vertex as well), so they are not blood.
    from ichvol.synth.case import SOLID_HU

    for seed, options in ((8, only(Hemorrhage.SDH)), (13, only(Hemorrhage.EDH)),
                          (8, only(Hemorrhage.SDH, slab_partial_volume=True))):
        case = generate_case(seed, options)
        assert case.labels.any()
        assert case.hu[case.labels > 0].max() < SOLID_HU
        assert case.truth["volumes_ml"] == pytest.approx(label_volumes_ml(case.labels, case.geometry), rel=1e-5)


def test_lesions_lie_where_their_type_belongs():
    case, anatomy = simulate(8, only(Hemorrhage.SDH))
    sdh = case.labels == Hemorrhage.SDH
    bone = case.hu > 300
    near_bone = binary_dilation(bone, structure=np.ones((1, 5, 5), bool))
    assert (sdh & near_bone).sum() > 0.05 * sdh.sum()  # hugs the inner table
    assert (sdh & anatomy.intracranial).sum() == sdh.sum()

    case, anatomy = simulate(9, only(Hemorrhage.IVH))
    ivh = case.labels == Hemorrhage.IVH
    assert ivh.any() and (ivh & ~anatomy.all_ventricles).sum() == 0

    case, anatomy = simulate(10, only(Hemorrhage.IPH))
    iph = case.labels == Hemorrhage.IPH
    assert iph.any() and (iph & ~(anatomy.brain | anatomy.csf_spaces)).sum() == 0
    assert (iph & anatomy.brain).sum() > 0.8 * iph.sum()

    case, anatomy = simulate(12, only(Hemorrhage.SAH))
    sah = case.labels == Hemorrhage.SAH
    assert sah.any() and (sah & ~anatomy.csf_spaces).sum() == 0

    case, anatomy = simulate(13, only(Hemorrhage.EDH))
    edh = case.labels == Hemorrhage.EDH
    assert edh.any() and (edh & anatomy.intracranial).sum() == edh.sum()
    assert (edh & binary_dilation(case.hu > 300, structure=np.ones((1, 5, 5), bool))).sum() > 0


def _tilted_seed() -> int:
    for seed in range(200):
        case = generate_case(seed, SynthOptions(slices=4, size=64, p_no_hemorrhage=1.0))
        if abs(case.acquisition.tilt_degrees) > 5:
            return seed
    raise AssertionError("no tilted case in 200 seeds")


def test_tilt_is_written_as_scanners_write_it(tmp_path):
    seed = _tilted_seed()
    case = generate_case(seed, SynthOptions(slices=8, size=64, p_no_hemorrhage=1.0))
    files = write_dicom_study(case, tmp_path, "case0000", seed, non_target_series=False)
    datasets = [pydicom.dcmread(f) for f in files]
    iop = np.array(datasets[0].ImageOrientationPatient, float)
    t = np.radians(case.acquisition.tilt_degrees)
    assert np.allclose(iop, [1, 0, 0, 0, np.cos(t), -np.sin(t)], atol=1e-5)
    positions = np.array([ds.ImagePositionPatient for ds in datasets], float)
    assert np.allclose(positions[:, :2], positions[0, :2], atol=1e-3)  # the table steps along patient z
    normal = np.cross(iop[:3], iop[3:])
    order = np.argsort(positions @ normal)
    geometry = VolumeGeometry(positions[order], iop[:3], iop[3:], tuple(map(float, datasets[0].PixelSpacing)),
                              int(datasets[0].Rows), int(datasets[0].Columns))
    assert geometry.tilt_degrees == pytest.approx(abs(case.acquisition.tilt_degrees), abs=0.01)
    assert geometry.slice_spacing == pytest.approx(case.geometry.slice_spacing, abs=1e-3)
    hu = np.stack([datasets[i].pixel_array * float(datasets[i].RescaleSlope) + float(datasets[i].RescaleIntercept)
                   for i in order])
    assert np.array_equal(hu, case.hu)


def _seed_with_all_series() -> int:
    for seed in range(100):
        case = generate_case(seed, SynthOptions(slices=3, size=64))
        plan = StudyPlan.draw(case, "case0000", seed, True)
        if plan.scout and plan.bone and plan.dose:
            return seed
    raise AssertionError("no study with all series types in 100 seeds")


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_every_series_type_passes_dciodvfy(tmp_path):
    seed = _seed_with_all_series()
    case = generate_case(seed, SynthOptions(slices=3, size=64))
    files = write_dicom_study(case, tmp_path, "case0000", seed)
    by_series: dict[str, Path] = {}
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_series.setdefault(str(ds.SeriesDescription), f)
    assert len(by_series) == 4
    kinds = {str(pydicom.dcmread(f).ImageType[2]) for f in by_series.values()}
    assert {"AXIAL", "LOCALIZER", "OTHER"} <= kinds
    for f in by_series.values():
        result = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        report = result.stdout + result.stderr
        assert "Error" not in report, f"{f.name}: {report}"


def test_study_headers(tmp_path):
    case = generate_case(2, SynthOptions(slices=3, size=64))
    files = write_dicom_study(case, tmp_path, "case0007", 2, non_target_series=False)
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT" and ds.BodyPartExamined == "HEAD"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert str(ds.PatientName) == "SYNTH^CASE0007"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 80.0)
    assert float(ds.RescaleIntercept) == (0.0 if case.acquisition.signed_pixels else -1024.0)
    assert len({pydicom.dcmread(f).SOPInstanceUID for f in files}) == len(files)


def test_real_lesion_masks_shape_the_iph(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    zz, yy, xx = np.mgrid[:12, :256, :256]
    # A bleed in the right hemisphere (low column index = patient right), mid-height of its scan.
    blob = ((xx - 80) ** 2 / 150 + (yy - 120) ** 2 / 100 + (zz - 6) ** 2 / 2 < 1).astype(np.int16)
    affine = np.diag([-0.9, -0.9, 5.0, 1.0])
    nib.save(nib.Nifti1Image(np.transpose(blob, (2, 1, 0)), affine), str(masks / "m1.nii.gz"))
    case, anatomy = simulate(5, only(Hemorrhage.IPH, lesion_masks=masks))
    iph = case.labels == Hemorrhage.IPH
    assert iph.any() and (iph & ~(anatomy.brain | anatomy.csf_spaces)).sum() == 0
    assert (iph & anatomy.all_ventricles).sum() == 0
    with pytest.raises(InputError):
        generate_case(5, only(Hemorrhage.IPH, lesion_masks=tmp_path / "missing"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ichvol", "synth", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (("--cases", "1", "--types", "IPH,XYZ"), "XYZ"),
    (("--cases", "0"), "--cases"),
    (("--cases", "1", "--format", "jpeg"), "--format"),
    (("--cases", "1", "--lesion-masks", "/nonexistent/masks"), "--lesion-masks"),
    (("--cases", "1", "--skull-halo-max", "5"), "--skull-halo-max"),
])
def test_cli_rejects_bad_options(tmp_path, monkeypatch, capsys, args, message):
    from ichvol.cli import main

    monkeypatch.setattr(sys, "argv", ["ichvol", "synth", "--out", str(tmp_path / "o"), *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "truth").exists()


def test_cli_writes_the_layout(tmp_path):
    result = run_cli("--out", str(tmp_path), "--cases", "1", "--seed", "3", "--format", "both", "--types", "IPH,IVH",
                     "--slices", "6", "--size", "64")
    assert result.returncode == 0, result.stderr
    truth = json.loads((tmp_path / "truth" / "case0000.json").read_text())
    assert set(truth["types"]) <= {"IPH", "IVH"}
    first = next((tmp_path / "dicom" / "case0000").glob("s002_*.dcm"))
    assert truth["study_instance_uid"] == pydicom.dcmread(first).StudyInstanceUID
    assert (tmp_path / "images" / "case0000.nii.gz").is_file() and (tmp_path / "labels" / "case0000.nii.gz").is_file()


def _irregular_seed(options: SynthOptions) -> int:
    from ichvol.synth.anatomy import sample_head
    from ichvol.synth.scanner import sample_scan

    for seed in range(500):
        rng = np.random.default_rng(seed)
        geometry = sample_scan(rng, options, sample_head(rng).c)[0]
        if not geometry.is_regular():
            return seed
    raise AssertionError("no irregular stack in 500 seeds")


def test_irregular_gaps_truth_for_dicom_and_for_nifti(tmp_path):
    from ichvol.nifti import write_volume

    options = SynthOptions(size=96, p_no_hemorrhage=0.0, types=(Hemorrhage.SDH, Hemorrhage.EDH))
    seed = _irregular_seed(options)
    case = generate_case(seed, options)
    assert not case.geometry.is_regular() and case.truth["regular_spacing"] is False
    assert case.truth["types"]
    assert case.truth["volumes_ml"] == pytest.approx(label_volumes_ml(case.labels, case.geometry), rel=1e-5)
    write_volume(tmp_path / "labels.nii.gz", case.labels, case.geometry)
    labels, nifti_geometry = read_volume(tmp_path / "labels.nii.gz")
    assert case.truth["nifti_volumes_ml"] == pytest.approx(label_volumes_ml(labels, nifti_geometry), rel=1e-5)


def test_large_bleed_pushes_the_brain_away_but_not_the_skull():
    from ichvol.synth.anatomy import build_anatomy, sample_head
    from ichvol.synth.grid import Crop, HeadGrid
    from ichvol.synth.lesions import Bleed, draw_iph
    from ichvol.synth.mass_effect import displacement
    from ichvol.synth.scanner import sample_scan

    rng = np.random.default_rng(3)
    head = sample_head(rng)
    geometry, center, rotation, _ = sample_scan(rng, SynthOptions(slices=10, size=128, allow_tilt=False), head.c)
    grid = HeadGrid(geometry, center, rotation, 1)
    anatomy = build_anatomy(grid, head, rng)
    small = []
    while not small:
        small = draw_iph(grid, anatomy, rng, with_extension=False)
    small_ml = small[0].voxels() * float(geometry.voxel_volumes_ml().mean())
    assert (displacement(grid, anatomy, small, rng) is None) == (small_ml < 15.0)
    # A 40 ml blob in the right hemisphere (patient right = low column index).
    blob = grid.ellipsoid((-35.0, 0.0, 10.0), (22.0, 22.0, 22.0)) < 1
    weight = blob.astype(np.float32)
    big = Bleed(Hemorrhage.IPH, Crop(grid.full_box(grid.everything()), weight), 70.0)
    di, dj = displacement(grid, anatomy, [big], rng)
    skull = anatomy.inner_depth_full <= 0
    assert np.abs(dj[skull]).max() < 1e-6 and np.abs(di[skull]).max() < 1e-6
    midline = (np.abs(grid.x) < 3) & (grid.z > 0) & (grid.z < 20) & anatomy.brain
    shift_mm = float(dj[midline].mean()) * geometry.pixel_spacing[1]
    assert midline.any() and shift_mm > 1.5  # pushed towards the patient's left (+column)


def test_slab_partial_volume_averages_sub_slices_and_keeps_the_truth_consistent():
    from ichvol.synth.case import SUBSLICES, _average_slabs, label_volumes_ml, slab_geometry

    plain = generate_case(3, SynthOptions(slices=6, size=64, allow_tilt=False))
    fine = slab_geometry(plain.geometry, thickness_mm=5.0)
    assert fine.shape[0] == SUBSLICES * plain.geometry.shape[0]
    offsets = fine.slice_offsets()
    assert (np.diff(offsets) > 0).all()  # still one ordered stack
    centres = offsets.reshape(-1, SUBSLICES).mean(axis=1)
    assert np.allclose(centres, plain.geometry.slice_offsets())

    # Majority of sub-slices decides the label; HU is the mean.
    sub_labels = np.zeros((2 * SUBSLICES, 1, 3), np.uint8)
    sub_labels[0:2, 0, 0] = 4  # 2 of 3: labelled
    sub_labels[2, 0, 1] = 1  # 1 of 3: not labelled
    sub_labels[3:6, 0, 2] = [2, 0, 2]  # outer two: labelled, of their type
    hu = np.arange(2 * SUBSLICES * 3, dtype=np.float32).reshape(2 * SUBSLICES, 1, 3)
    empty = np.zeros((2 * SUBSLICES, 1, 3), bool)
    anatomy = _TissueMasks(*(empty.copy() for _ in range(5)))
    mean_hu, labels, reduced = _average_slabs(hu, sub_labels, anatomy)
    assert labels[:, 0].tolist() == [[4, 0, 0], [0, 0, 2]]
    assert np.allclose(mean_hu, hu.reshape(2, SUBSLICES, 1, 3).mean(axis=1))
    assert reduced.brain.shape == (2, 1, 3)

    case = generate_case(3, SynthOptions(slices=6, size=64, allow_tilt=False, slab_partial_volume=True))
    assert case.hu.shape == case.labels.shape == case.geometry.shape == plain.geometry.shape
    volumes = label_volumes_ml(case.labels, case.geometry)
    assert {k: round(v, 6) for k, v in volumes.items()} == case.truth["volumes_ml"]


@dataclass
class _TissueMasks:
    """The tissue masks the slab reduction carries (the rest of an Anatomy is not needed)."""

    intracranial: np.ndarray
    brain: np.ndarray
    csf_spaces: np.ndarray
    cisterns: np.ndarray
    all_ventricles: np.ndarray


def _halo_profile(seeds, pixel_mm: float, halo_max: float = 1.0) -> np.ndarray:
    """Mean HU by column across a straight inner table (bone left of column 40, brain of 35 HU right of it)."""
    from ichvol.synth.case import add_noise

    profiles = []
    for seed in seeds:
        hu = np.full((4, 64, 200), 35.0, dtype=np.float32)
        hu[:, :, :40] = 1200.0
        blurred = add_noise(hu, np.random.default_rng(seed), pixel_mm, halo_max)
        profiles.append(blurred[:, 8:56].mean(axis=(0, 1)))
    return np.mean(profiles, axis=0)


def test_scanner_blur_spreads_a_faint_halo_of_the_skull_into_the_brain():
    pixel_mm = 0.5
    profile = _halo_profile(range(4), pixel_mm)

    def at(mm: float) -> float:
        return float(profile[40 + int(round(mm / pixel_mm))])

    deep = at(40.0)
    assert abs(deep - 35.0) < 1.5  # far from bone: unchanged
    # Two millimetres from the inner table, beyond the sharp core of the blur, still brighter: as on real CT.
    assert at(2.0) - deep > 3.0
    assert at(1.0) > at(2.0) > at(4.0) > deep  # fading with distance
    assert at(4.0) - deep < 6.0


def test_a_stronger_skull_halo_brightens_the_inner_table_band_and_the_default_keeps_every_seed():
    from ichvol.synth.case import add_noise

    hu = np.full((2, 32, 64), 35.0, dtype=np.float32)
    hu[:, :, :20] = 1200.0
    plain = add_noise(hu.copy(), np.random.default_rng(5), 0.5)
    assert np.array_equal(plain, add_noise(hu.copy(), np.random.default_rng(5), 0.5, 1.0))

    pixel_mm, seeds = 0.5, range(8)
    modern, older = _halo_profile(seeds, pixel_mm), _halo_profile(seeds, pixel_mm, halo_max=3.0)
    for mm in (1.0, 1.5, 2.0):
        column = 40 + int(round(mm / pixel_mm))
        assert older[column] - 35.0 > 1.4 * (modern[column] - 35.0)  # the band 1-2 mm in, as on older scanners
    assert abs(older[40 + 80] - 35.0) < 1.5  # 40 mm in: still unchanged
    with pytest.raises(InputError, match="skull_halo_max"):
        SynthOptions(skull_halo_max=0.5)
