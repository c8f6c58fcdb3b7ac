"""Decode the stored pixel values of an instance through pydicom's decoders.

Compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE) need the optional `jpeg` extra (pylibjpeg and
its plugins); without a decoder the error says which transfer syntax it is and what to install. A JPEG stream
those decoders refuse is handed to DCMTK's dcmdjpeg when it is installed (dcmtk.py).
"""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..errors import PixelDataError
from .dcmtk import decoded_by_dcmdjpeg
from .scan import Instance

INSTALL_HINT = "install the decoders with: pip install 'ichvol[jpeg]'"


def stored_values(instance: Instance) -> np.ndarray:
    """The stored values of every frame, shaped (frames, rows, columns), before rescale."""
    name = instance.path.name
    try:
        dataset = pydicom.dcmread(instance.path, force=True)
    except Exception as exc:  # the header was readable before; the rest of the file may not be
        raise PixelDataError(f"{name}: file cannot be read to the end ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in dataset:
        raise PixelDataError(f"{name}: the instance has no pixel data (PixelData is missing)")
    syntax = _transfer_syntax(dataset)
    if syntax.is_compressed:
        _check_decoder(name, syntax)
    try:
        values = dataset.pixel_array
    except Exception as exc:  # pydicom and its plugins raise many kinds on damaged or truncated data
        values = decoded_by_dcmdjpeg(instance.path, syntax) if syntax.is_compressed else None
        if values is None:
            raise PixelDataError(
                f"{name}: pixel data in {syntax.name or syntax} cannot be decoded ({type(exc).__name__}: {exc})"
            ) from exc
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise PixelDataError(f"{name}: {dataset.SamplesPerPixel} samples per pixel; a CT image has one")
    return values.reshape((-1, *values.shape[-2:]))


def padding_mask(values: np.ndarray, header: pydicom.Dataset) -> np.ndarray | None:
    """Where the stored values are padding (outside the reconstructed field of view), by Pixel Padding Value
    and, when present, Pixel Padding Range Limit (PS3.3 C.7.5.1.1.2); None when the header declares none."""
    if header.get("PixelPaddingValue") is None:
        return None
    bounds = [_stored_as(values, header.PixelPaddingValue)]
    if header.get("PixelPaddingRangeLimit") is not None:
        bounds.append(_stored_as(values, header.PixelPaddingRangeLimit))
    return (values >= min(bounds)) & (values <= max(bounds))


def _stored_as(values: np.ndarray, value) -> int:
    """A padding attribute in the signedness of the pixels: a header may give a signed pixel's padding
    as its unsigned bit pattern (US where SS was meant)."""
    value = int(value[0] if isinstance(value, (list, MultiValue)) else value)
    if values.dtype.kind == "i" and value > np.iinfo(values.dtype).max:
        value -= 1 << (8 * values.dtype.itemsize)
    return value


def _transfer_syntax(dataset: pydicom.Dataset) -> UID:
    """The transfer syntax; for a file without meta header (no preamble) the encoding it was read with."""
    meta = dataset.file_meta if hasattr(dataset, "file_meta") else None
    if meta is not None and "TransferSyntaxUID" in meta:
        return UID(meta.TransferSyntaxUID)
    implicit, little = dataset.original_encoding
    explicit = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    syntax = ImplicitVRLittleEndian if implicit else explicit
    dataset.ensure_file_meta()
    dataset.file_meta.TransferSyntaxUID = syntax
    return UID(syntax)


def _check_decoder(name: str, syntax: UID) -> None:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise PixelDataError(
            f"{name}: pixel data in transfer syntax {syntax.name or 'unknown'} ({syntax}) is not supported"
        ) from exc
    if not decoder.is_available:
        raise PixelDataError(
            f"{name}: pixel data in transfer syntax {syntax.name} ({syntax}) needs a decoder that is not "
            f"installed; {INSTALL_HINT}"
        )
