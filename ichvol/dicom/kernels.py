"""Rank reconstruction kernels: soft tissue (brain) first, then unknown, then sharp (bone, lung).

ConvolutionKernel names are vendor-specific. The ones handled here:
- GE: STANDARD, STD+, SOFT, BRAIN (soft); BONE, BONEPLUS, EDGE, LUNG, DETAIL, SHARP (sharp).
- Siemens: a letter or two and a sharpness number, e.g. H31s, Hr38, J40s (soft, <= 45), H70h, Hr60, Br64
  (sharp, >= 60); in between counts as unknown.
- Philips: A, B, UA, UB, UC, YA, YB, CB (soft); D, E, EB, EC, L, YC, YD, YE, YF (sharp).
- Canon/Toshiba: FC01-FC29 (soft, FC21-FC26 are the head kernels), FC30 and above (bone, lung).
- Any vendor: names with SOFT, BRAIN, SMOOTH, STANDARD / BONE, LUNG, SHARP, EDGE.
"""

from __future__ import annotations

import re
from enum import IntEnum

from pydicom import Dataset

from .frames import functional_group


class KernelClass(IntEnum):
    """Higher is preferred."""

    SHARP = 0
    UNKNOWN = 1
    SOFT = 2


_SHARP_WORDS = ("BONE", "LUNG", "SHARP", "EDGE", "DETAIL", "HIGH")
_SOFT_WORDS = ("SOFT", "BRAIN", "SMOOTH", "STANDARD", "STND", "STD")
_PHILIPS_SOFT = {"A", "B", "UA", "UB", "UC", "YA", "YB", "CB"}
_PHILIPS_SHARP = {"D", "E", "EB", "EC", "L", "YC", "YD", "YE", "YF"}
_SIEMENS = re.compile(r"^[A-Z][a-z]?(\d{2})[a-z]?$")
_CANON = re.compile(r"^FC(\d{1,2})$")


def classify_kernel(kernel: str) -> KernelClass:
    name = kernel.strip()
    if not name:
        return KernelClass.UNKNOWN
    upper = name.upper()
    if any(word in upper for word in _SHARP_WORDS):
        return KernelClass.SHARP
    if any(word in upper for word in _SOFT_WORDS):
        return KernelClass.SOFT
    if upper in _PHILIPS_SOFT:
        return KernelClass.SOFT
    if upper in _PHILIPS_SHARP:
        return KernelClass.SHARP
    if match := _CANON.match(upper):
        return KernelClass.SOFT if int(match.group(1)) < 30 else KernelClass.SHARP
    if match := _SIEMENS.match(name):
        number = int(match.group(1))
        if number <= 45:
            return KernelClass.SOFT
        if number >= 60:
            return KernelClass.SHARP
    return KernelClass.UNKNOWN


def kernel_name(header: Dataset) -> str:
    """The ConvolutionKernel of an instance (classic, or an enhanced image's reconstruction group); "" if none."""
    value = header.get("ConvolutionKernel")
    if value is None:
        reconstruction = functional_group(header, 0, "CTReconstructionSequence")
        value = reconstruction.get("ConvolutionKernel") if reconstruction else None
    if value is None:
        return ""
    # Multi-valued on some scanners (e.g. Siemens "Hr38" "3"): the first value names the kernel.
    return str(value[0] if not isinstance(value, str) else value)
