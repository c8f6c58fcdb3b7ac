"""NIfTI reading and writing of (slice, row, column) arrays with their geometry (nibabel, RAS affine)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputError
from .geometry import VolumeGeometry


def write_volume(path: Path, array: np.ndarray, geometry: VolumeGeometry) -> None:
    """Write a (z, y, x) array as NIfTI stored (x, y, z) with the geometry's RAS affine (shear kept in sform)."""
    affine = geometry.nifti_affine()
    image = nib.Nifti1Image(np.ascontiguousarray(np.transpose(array, (2, 1, 0))), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    # Fixed header fields so that the same input gives the same bytes.
    image.header["descrip"] = b"ichvol"
    nib.save(image, str(path))


def read_volume(path: Path) -> tuple[np.ndarray, VolumeGeometry]:
    """Read a NIfTI file as a (z, y, x) array and its geometry."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as exc:  # nibabel raises many kinds
        raise InputError(f"{path}: not a readable NIfTI file ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D image, found shape {data.shape}")
    affine = image.get_sform() if int(image.header["sform_code"]) > 0 else image.affine
    geometry = VolumeGeometry.from_nifti_affine(affine, data.shape)
    return np.ascontiguousarray(np.transpose(data, (2, 1, 0))), geometry
