"""The synthetic scanner: matrix, field of view, slice spacing, gantry tilt, irregular gaps, head pose.

Tilt is written as real scanners write it: the image plane is tilted about the patient's left-right axis
(column cosine (0, cos t, -sin t)) while the table, and with it the slice positions, steps along patient z.
"""

from __future__ import annotations

import numpy as np

from ..geometry import VolumeGeometry
from .grid import rotation_matrix
from .options import Acquisition, SynthOptions

SPACINGS_MM = (2.5, 3.0, 3.75, 4.0, 5.0)
SPACING_WEIGHTS = (0.15, 0.1, 0.1, 0.2, 0.45)
SCANNERS = (
    ("GE MEDICAL SYSTEMS", "Revolution CT"),
    ("SIEMENS", "SOMATOM Definition AS"),
    ("Philips", "Ingenuity CT"),
    ("TOSHIBA", "Aquilion ONE"),
)


def sample_slice_gaps(rng: np.random.Generator, n: int, spacing: float, irregular: bool) -> np.ndarray:
    gaps = np.full(n - 1, spacing)
    if irregular:
        if rng.random() < 0.5:
            # Thin slices through the posterior fossa, thicker above (as in many routine head protocols).
            k = int(rng.integers(max(2, n // 5), max(3, n // 2)))
            gaps[:k] = spacing * rng.choice([0.5, 0.6, 0.75])
        else:
            # One or two slices missing from the stack.
            for index in rng.choice(n - 1, size=min(n - 1, int(rng.integers(1, 3))), replace=False):
                gaps[index] *= 2.0
    return gaps


def sample_scan(rng: np.random.Generator, options: SynthOptions, head_height_mm: float):
    """Returns (geometry, head_center_lps, head_rotation, acquisition)."""
    if options.size is not None:
        rows = cols = options.size
    else:
        rows, cols = 512, (586 if rng.random() < 0.1 else 512)
    fov = float(rng.uniform(220.0, 280.0))  # of the 512 reference matrix
    pixel = round(fov / (options.size or 512), 6)
    spacing = float(rng.choice(SPACINGS_MM, p=SPACING_WEIGHTS))
    if options.slices is not None:
        n = options.slices
    else:
        n = int(np.clip(round(rng.uniform(120.0, 165.0) / spacing), 20, 47))
    irregular = options.slices is None and rng.random() < 0.15
    gaps = sample_slice_gaps(rng, n, spacing, irregular)

    tilt = 0.0
    if options.allow_tilt and rng.random() < 0.3:
        tilt = round(float(rng.uniform(5.0, 25.0) * rng.choice([-1.0, 1.0])), 2)
    t = np.radians(tilt)
    row_cos = np.array([1.0, 0.0, 0.0])
    col_cos = np.array([0.0, np.cos(t), -np.sin(t)])

    head_center = np.array([rng.uniform(-12, 12), rng.uniform(-8, 15), 0.0])
    # Operators tilt the gantry to follow the orbitomeatal line, so head pitch and tilt partly cancel.
    pitch = float(rng.uniform(-12, 12) - 0.5 * tilt)
    rotation = rotation_matrix(rng.uniform(-10, 10), pitch, rng.uniform(-5, 5))

    table_steps = gaps / np.cos(t)
    extent = float(table_steps.sum())
    if options.slices is not None:
        bottom = float(rng.uniform(-5.0, 20.0)) - extent / 2.0  # small test stacks: around the ventricles
    else:
        bottom = float(rng.uniform(-0.72, -0.5) * head_height_mm)
        bottom = min(bottom, 0.97 * head_height_mm - extent)  # do not run far above the vertex
    z = bottom + np.concatenate([[0.0], np.cumsum(table_steps)])
    width, height = cols * pixel, rows * pixel
    centers = np.stack([np.zeros(n), np.full(n, rng.uniform(-5, 10)), z], axis=1)
    positions = centers - (width / 2.0) * row_cos - (height / 2.0) * col_cos
    positions = np.round(positions, 4)
    geometry = VolumeGeometry(positions, row_cos, col_cos, (pixel, pixel), rows, cols)

    manufacturer, model = SCANNERS[int(rng.integers(len(SCANNERS)))]
    acquisition = Acquisition(
        tilt_degrees=round(tilt, 2),
        nominal_thickness_mm=spacing,
        signed_pixels=bool(rng.random() < 0.4),
        reconstruction_diameter_mm=round(pixel * max(rows, cols), 3),
        manufacturer=manufacturer,
        model=model,
        kvp=float(rng.choice([100.0, 120.0, 140.0], p=[0.1, 0.8, 0.1])),
        tube_current_ma=int(rng.integers(150, 350)),
        instances_from_top=bool(rng.random() < 0.5),
    )
    return geometry, head_center, rotation, acquisition
