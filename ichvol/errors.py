"""Typed exceptions. Every error a user can cause derives from IchvolError and carries a readable message.

The CLI turns an IchvolError into a message on stderr and a non-zero exit; library code never exits.
"""


class IchvolError(Exception):
    """Base class of all errors ichvol raises on purpose."""

    exit_code = 2


class InputError(IchvolError):
    """The input given by the user cannot be used (missing file, wrong shape, not what was asked)."""


class NotDicomError(InputError):
    """A file or folder that should hold DICOM holds none."""


class NoSuitableSeriesError(InputError):
    """A study holds no series that ichvol can process; `reasons` says why each series was rejected."""

    def __init__(self, message: str, reasons: dict[str, str] | None = None):
        super().__init__(message)
        self.reasons = dict(reasons or {})


class GeometryError(InputError):
    """Slices that do not form one volume: mixed orientations, one slice, inconsistent sizes."""


class NotAHeadCTError(InputError):
    """An image in which no cranial cavity can be found (a phantom, a skull-stripped or non-head image): the
    model's findings there would mean nothing."""


class PixelDataError(InputError):
    """Pixel data that is missing or cannot be decoded (for example a compressed transfer syntax
    without the decoder installed)."""


class ModelError(IchvolError):
    """A model folder that is missing, inconsistent or does not match its configuration."""


class ConfigError(IchvolError):
    """A configuration file or environment override that is invalid; names the file and key."""
