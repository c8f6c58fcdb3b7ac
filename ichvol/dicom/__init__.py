"""Reading a head CT study: scan a folder, choose the CT series, build the volume with its true geometry."""

from .assemble import assemble_series
from .kernels import KernelClass, classify_kernel
from .load import load_ct_image, load_image
from .scan import Instance, SeriesScan, StudyScan, read_study
from .selection import SeriesSelection, select_series

__all__ = [
    "Instance",
    "KernelClass",
    "SeriesScan",
    "SeriesSelection",
    "StudyScan",
    "assemble_series",
    "classify_kernel",
    "load_ct_image",
    "load_image",
    "read_study",
    "select_series",
]
