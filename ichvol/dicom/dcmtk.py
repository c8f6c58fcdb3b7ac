"""DCMTK's dcmdjpeg as a second JPEG decoder, for streams pydicom's decoders refuse.

pylibjpeg is strict about the JPEG syntax: a 12-bit JPEG Extended stream whose scan header (SOS) is not what
the standard asks for (common in older archives) fails there, while dcmdjpeg decodes it with a warning. DCMTK is
installed wherever ichvol is deployed (quick start, Dockerfile), but it stays optional: without it this returns
None and the caller reports pydicom's error.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import UID, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1

log = logging.getLogger(__name__)

DCMDJPEG_SYNTAXES = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1})
TIMEOUT_SECONDS = 120


def decoded_by_dcmdjpeg(path: Path, syntax: UID) -> np.ndarray | None:
    """The pixel array of `path` decompressed by dcmdjpeg, or None when it cannot (no DCMTK, another transfer
    syntax, or dcmdjpeg failing too)."""
    tool = shutil.which("dcmdjpeg") if syntax in DCMDJPEG_SYNTAXES else None
    if tool is None:
        return None
    with tempfile.TemporaryDirectory(prefix="ichvol-dcmdjpeg-") as folder:
        out = Path(folder) / "decoded.dcm"
        try:
            done = subprocess.run([tool, str(path), str(out)], capture_output=True, text=True,
                                  timeout=TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("%s: dcmdjpeg could not run: %s", path.name, exc)
            return None
        if done.returncode != 0 or not out.is_file():
            log.warning("%s: dcmdjpeg failed too (exit %d): %s", path.name, done.returncode,
                        done.stderr.strip()[:300])
            return None
        values = pydicom.dcmread(out).pixel_array
    log.warning("%s: %s decoded by DCMTK dcmdjpeg (pydicom's decoders refused the stream)", path.name,
                syntax.name)
    return values
