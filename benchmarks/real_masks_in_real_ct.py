"""Build a test set of real expert hemorrhage shapes inside real head CT, in the `ichvol evaluate` layout.

Each binary mask (NIfTI with its own affine, e.g. HemSeg-500) is carried into a real CT series (DICOM, tilt
allowed): it is resampled onto the CT grid by its physical coordinates, averaging three samples across each
slice's slab (partial volume across thick slices, linear in-plane), translated to a place inside the brain,
and painted with blood of 50-90 HU blended by that fraction. Label = fraction >= 0.5.

NIfTI stores evenly spaced slices only, so each CT series is split into runs of evenly spaced slices (the GE
tilted series holds a 4 mm and a 7 mm run); a lesion goes into one run.

    python benchmarks/real_masks_in_real_ct.py --ct CT_SERIES_DIR [--ct ...] --masks MASK_DIR --out TESTSET \
        [--seed 7] [--max-cases N] [--clean-cases]
    ichvol evaluate --testset TESTSET --out RESULT

dataset.json says "binary" labels; cases are typed "IPH+IVH" (the masks hold IPH and/or IVH, which one is not
known) so that they group as IPH+IVH+mixed; --clean-cases adds each run untouched as a "none" case.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ichvol.geometry import LPS_TO_RAS
from ichvol.image import CTImage
from ichvol.nifti import write_volume

log = logging.getLogger("real_masks_in_real_ct")

BLOOD_HU = (50.0, 90.0)
SLAB_SAMPLES = (-1 / 3, 0.0, 1 / 3)  # positions across a slice's slab, in slab thicknesses
MIN_RUN_SLICES = 8
MIN_INSIDE_BRAIN = 0.9


@dataclass
class Run:
    """A stretch of evenly spaced slices of one CT series, with its brain masks."""

    name: str
    image: CTImage
    brain: np.ndarray  # intracranial soft tissue
    core: np.ndarray  # brain eroded: where lesion centres may go


def even_runs(image: CTImage, tolerance_mm: float = 0.1) -> list[np.ndarray]:
    """Index arrays of the longest stretches of evenly spaced slices (at least MIN_RUN_SLICES)."""
    offsets = image.geometry.slice_offsets()
    runs, current = [], [0]
    for i in range(1, len(offsets)):
        gap = offsets[i] - offsets[i - 1]
        if len(current) == 1 or abs(gap - (offsets[current[1]] - offsets[current[0]])) <= tolerance_mm:
            current.append(i)
        else:
            runs.append(current)
            current = [i]
    runs.append(current)
    return [np.array(r) for r in runs if len(r) >= MIN_RUN_SLICES]


def brain_masks(hu: np.ndarray, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Intracranial soft tissue (inside the filled skull, 0-80 HU) and its in-plane erosion by ~6 mm."""
    bone = hu > 250
    inside = np.stack([ndimage.binary_fill_holes(b) for b in bone]) & ~bone & (hu > 0) & (hu < 80)
    inside = ndimage.binary_opening(inside, structure=np.ones((1, 5, 5), bool))
    labels, count = ndimage.label(inside)
    if count == 0:
        return inside, inside
    sizes = ndimage.sum_labels(inside, labels, index=np.arange(1, count + 1))
    brain = labels == 1 + int(np.argmax(sizes))
    radius = max(1, int(round(6.0 / pixel_mm)))
    disk = np.zeros((1, 2 * radius + 1, 2 * radius + 1), bool)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk[0] = yy**2 + xx**2 <= radius**2
    return brain, ndimage.binary_erosion(brain, structure=disk)


def lesion_fraction(mask_path: Path, image: CTImage) -> tuple[np.ndarray, np.ndarray] | None:
    """The mask's fraction on the CT's index grid, centred on the brain's centre of mass.

    Returns (fraction, origin): a local (z, y, x) array and the CT index of its first voxel (may lie outside
    the volume: placement comes later). None for an empty mask."""
    mask_image = nib.load(str(mask_path))
    mask = np.asarray(mask_image.dataobj) > 0  # stored (x, y, z)
    if not mask.any():
        return None
    mask_to_lps = LPS_TO_RAS @ mask_image.affine
    ct_affine = image.geometry.affine()  # (x, y, z) index -> LPS, sheared under tilt
    idx = np.argwhere(mask)
    lesion_centre = (mask_to_lps @ np.append(idx.mean(axis=0), 1.0))[:3]
    head = image.hu > 0
    target = (ct_affine @ np.append(np.argwhere(head).mean(axis=0)[::-1], 1.0))[:3] if head.any() else lesion_centre
    shift = target - lesion_centre

    lo, hi = idx.min(axis=0) - 1, idx.max(axis=0) + 1
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    in_ct = (np.linalg.inv(ct_affine) @ (mask_to_lps @ corners.T + np.append(shift, 0.0)[:, None])).T[:, :3]
    start = np.floor(in_ct.min(axis=0)).astype(int) - np.array([2, 2, 1])
    stop = np.ceil(in_ct.max(axis=0)).astype(int) + np.array([3, 3, 2])
    xs, ys, zs = (np.arange(a, b) for a, b in zip(start, stop, strict=True))
    grid = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
    lps = (ct_affine @ np.c_[grid, np.ones(len(grid))].T)[:3] - shift[:, None]
    to_mask = np.linalg.inv(mask_to_lps)
    thickness = image.geometry.slice_spacing
    fraction = np.zeros(len(grid))
    for t in SLAB_SAMPLES:
        points = lps + image.geometry.normal[:, None] * (t * thickness)
        coords = (to_mask @ np.vstack([points, np.ones(points.shape[1])]))[:3]
        fraction += ndimage.map_coordinates(mask.astype(np.float32), coords, order=1, mode="constant")
    fraction = (fraction / len(SLAB_SAMPLES)).reshape(len(xs), len(ys), len(zs)).transpose(2, 1, 0)
    return fraction, np.array([start[2], start[1], start[0]])


def place(fraction: np.ndarray, run: Run, rng: np.random.Generator, tries: int = 300):
    """A CT index offset for the fraction array such that the lesion lies in the brain, or None."""
    label = fraction >= 0.5
    touched = fraction > 0.01
    if not label.any():
        return None
    centre = np.round(np.argwhere(label).mean(axis=0)).astype(int)
    candidates = np.argwhere(run.core)
    if len(candidates) == 0:
        return None
    shape = np.array(run.image.hu.shape)
    best, best_inside = None, 0.0
    for k in rng.choice(len(candidates), size=min(tries, len(candidates)), replace=False):
        origin = candidates[k] - centre
        lo, hi = origin, origin + np.array(fraction.shape)
        t_idx = np.argwhere(touched) + origin
        if (t_idx < 0).any() or (t_idx >= shape).any():
            continue
        l_idx = np.argwhere(label) + origin
        inside = float(run.brain[tuple(l_idx.T)].mean())
        if inside > best_inside:
            best, best_inside = (lo, hi), inside
        if inside >= MIN_INSIDE_BRAIN:
            break
    return best if best_inside >= 0.75 else None


def insert(run: Run, fraction: np.ndarray, box, blood_hu: float, rng: np.random.Generator):
    lo, hi = box
    shape = np.array(run.image.hu.shape)
    # The fraction box may stick out of the volume where it holds nothing (place() checked): crop it.
    clo, chi = np.maximum(lo, 0), np.minimum(hi, shape)
    fraction = fraction[tuple(slice(a - o, b - o) for a, b, o in zip(clo, chi, lo, strict=True))]
    region = tuple(slice(a, b) for a, b in zip(clo, chi, strict=True))
    hu = run.image.hu.astype(np.float32)
    blood = blood_hu + rng.normal(0.0, 3.0, size=fraction.shape)
    hu[region] = (1 - fraction) * hu[region] + fraction * blood
    labels = np.zeros(hu.shape, np.uint8)
    labels[region] = fraction >= 0.5
    return np.round(hu).astype(np.int16), labels


def load_runs(folders: list[Path]) -> list[Run]:
    from ichvol.dicom import load_ct_image

    runs = []
    for folder in folders:
        image, _selection = load_ct_image(folder)
        for indices in even_runs(image):
            sub = CTImage(np.asarray(image.hu)[indices], image.geometry.with_slices(indices))
            brain, core = brain_masks(sub.hu, float(sub.geometry.pixel_spacing[0]))
            name = f"{folder.name}-{indices[0]:02d}-{indices[-1]:02d}"
            log.info(
                "run %s: %d slices, %.2f mm apart, brain %.0f ml",
                name,
                len(indices),
                sub.geometry.slice_spacing,
                float(brain.sum() * sub.geometry.voxel_volumes_ml()[0]),
            )
            runs.append(Run(name, sub, brain, core))
    return runs


def build(
    ct_folders: list[Path], mask_folder: Path, out: Path, seed: int, max_cases: int | None, clean_cases: bool
) -> dict:
    rng = np.random.default_rng(seed)
    runs = [r for r in load_runs(ct_folders) if r.core.any()]
    if not runs:
        raise SystemExit("no usable run of evenly spaced slices with brain in the given CT series")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    masks = sorted(mask_folder.glob("*.nii.gz"))[: max_cases or None]
    cases, skipped = {}, {}
    for mask_path in masks:
        name = mask_path.name[: -len(".nii.gz")]
        for run in (runs[i] for i in rng.permutation(len(runs))):
            made = lesion_fraction(mask_path, run.image)
            if made is None:
                skipped[name] = "empty mask"
                break
            fraction, _ = made
            box = place(fraction, run, rng)
            if box is None:
                skipped[name] = "does not fit inside the brain of any run"
                continue
            blood = float(rng.uniform(*BLOOD_HU))
            hu, labels = insert(run, fraction, box, blood, rng)
            write_volume(out / "images" / f"{name}.nii.gz", hu, run.image.geometry)
            write_volume(out / "labels" / f"{name}.nii.gz", labels, run.image.geometry)
            volume = float(labels.sum(axis=(1, 2)) @ run.image.geometry.voxel_volumes_ml())
            cases[name] = {
                "type": "IPH+IVH",
                "ct": run.name,
                "blood_hu": round(blood, 1),
                "volume_ml": round(volume, 3),
            }
            skipped.pop(name, None)
            log.info("%s -> %s: %.2f ml, %.0f HU", name, run.name, volume, blood)
            break
    if clean_cases:
        for run in runs:
            hu = np.round(run.image.hu).astype(np.int16)
            write_volume(out / "images" / f"clean-{run.name}.nii.gz", hu, run.image.geometry)
            write_volume(out / "labels" / f"clean-{run.name}.nii.gz", np.zeros(hu.shape, np.uint8), run.image.geometry)
            cases[f"clean-{run.name}"] = {"type": "none", "ct": run.name}
    dataset = {
        "labels": "binary",
        "description": "real binary hemorrhage masks (IPH and/or IVH, type per case unknown) inserted into "
        "real head CT by benchmarks/real_masks_in_real_ct.py",
        "seed": seed,
        "cases": cases,
        "skipped": skipped,
    }
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path, action="append", required=True, help="a DICOM CT series folder")
    parser.add_argument("--masks", type=Path, required=True, help="folder of binary mask NIfTI files")
    parser.add_argument("--out", type=Path, required=True, help="test-set folder to write")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-cases", type=int, default=None)
    parser.add_argument("--clean-cases", action="store_true", help="add each CT run untouched as a 'none' case")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    dataset = build(args.ct, args.masks, args.out, args.seed, args.max_cases, args.clean_cases)
    print(f"{len(dataset['cases'])} cases written to {args.out}, {len(dataset['skipped'])} masks skipped")


if __name__ == "__main__":
    main()
