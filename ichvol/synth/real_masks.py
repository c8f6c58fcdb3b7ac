"""IPH/IVH shapes sampled from real expert masks (binary NIfTI files, e.g. HemSeg-500), resampled onto the
synthetic case's grid and placed inside the brain. Voxels landing in a ventricle become IVH."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates

from ..errors import InputError
from ..labels import Hemorrhage
from .anatomy import Anatomy
from .grid import Crop, HeadGrid, rotation_matrix
from .lesions import Bleed

LPS_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class RealMaskLibrary:
    files: tuple[Path, ...]

    @classmethod
    def open(cls, folder: Path) -> RealMaskLibrary:
        files = tuple(sorted(Path(folder).glob("*.nii.gz")) + sorted(Path(folder).glob("*.nii")))
        if not files:
            raise InputError(f"no lesion masks (*.nii.gz) in {folder}")
        return cls(files)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The cropped mask (float32, i j k), the affine from its voxel indices to RAS mm, and where the bleed
        sat in its original scan as a head-frame guess (mm: left, posterior from the image centre; fraction
        of the scanned height)."""
        path = self.files[index % len(self.files)]
        try:
            image = nib.load(str(path))
            data = np.asarray(image.dataobj) > 0
        except Exception as exc:  # nibabel raises many kinds
            raise InputError(f"{path}: not a readable NIfTI mask ({exc})") from exc
        if data.ndim != 3 or not data.any():
            return np.zeros((1, 1, 1), np.float32), np.eye(4), np.zeros(3)
        idx = np.argwhere(data)
        lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
        crop = data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
        shift = np.eye(4)
        shift[:3, 3] = lo
        centroid = idx.mean(axis=0)
        center = (np.array(data.shape) - 1) / 2.0
        offset_ras = image.affine[:3, :3] @ (centroid - center)
        where = np.array([-offset_ras[0], -offset_ras[1], centroid[2] / max(data.shape[2] - 1, 1)])
        return np.pad(crop, 1), image.affine @ shift @ _translate(-1.0), where


def _translate(v: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = v
    return t


def draw_real_iph(grid: HeadGrid, anatomy: Anatomy, rng: np.random.Generator, masks: RealMaskLibrary,
                  allow_ivh: bool) -> list[Bleed]:
    """Place a real mask where it sat in its own scan (scaled to this head), else nearby; the part in the
    parenchyma is IPH, the part in a ventricle IVH (or dropped when IVH is not wanted)."""
    p = anatomy.params
    for _ in range(6):
        mask, affine, where = masks.load(int(rng.integers(len(masks.files))))
        if mask.sum() < 8:
            continue
        idx = np.argwhere(mask > 0.5)
        centroid_ras = (affine @ np.c_[idx, np.ones(len(idx))].T)[:3].mean(axis=1)
        flip = rng.random() < 0.5
        to_ras = LPS_RAS @ np.diag([-1.0 if flip else 1.0, 1.0, 1.0]) @ rotation_matrix(rng.uniform(-10, 10), 0, 0)
        inverse = np.linalg.inv(affine)
        corners = np.argwhere(np.ones((2, 2, 2))) * (np.array(mask.shape) - 1)
        corners_ras = (affine @ np.c_[corners, np.ones(8)].T)[:3]
        extent = float(np.linalg.norm(corners_ras - centroid_ras[:, None], axis=0).max())
        home = np.array([where[0] * (-1 if flip else 1) * p.a / 75.0, where[1] * p.b / 93.0,
                         -0.6 * p.c + where[2] * 1.6 * p.c])
        best = None
        usable = anatomy.brain | anatomy.csf_spaces
        if allow_ivh:
            usable = usable | anatomy.all_ventricles
        for attempt in range(8):
            center = home + (rng.normal(0, 4.0 * attempt, 3) if attempt else 0.0)
            box = grid.sphere_box(center, extent + 2)
            if box is None:
                continue
            x, y, z = grid.coords(box)
            ras = centroid_ras[:, None] + to_ras @ np.stack(
                [x.ravel() - center[0], y.ravel() - center[1], z.ravel() - center[2]])
            ijk = inverse[:3, :3] @ ras + inverse[:3, 3:4]
            coarse = map_coordinates(mask, ijk, order=1, cval=0.0).reshape(x.shape)
            full = grid.up_box(coarse, box)
            inside = full.data >= 0.5
            total = int(inside.sum())
            if total < 8:
                continue
            fit = float((inside & usable[full.box]).sum()) / total
            if best is None or fit > best[0]:
                best = (fit, full)
            if fit > 0.9:
                break
        if best is None:
            continue
        full = best[1]
        weight = np.clip(full.data, 0, 1).astype(np.float32)
        density = float(rng.uniform(55, 85))
        parenchyma = anatomy.brain[full.box] | anatomy.csf_spaces[full.box]
        bleeds = [Bleed(Hemorrhage.IPH, Crop(full.box, weight * parenchyma), density)]
        if allow_ivh:
            bleeds.append(Bleed(Hemorrhage.IVH, Crop(full.box, weight * anatomy.all_ventricles[full.box]), density))
        return bleeds
    return []
