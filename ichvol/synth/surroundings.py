"""What lies around the head in a real head CT: the head holder (a curved shell with a foam pad) and the
scanner's circular reconstruction field, outside which pixels hold the padding value."""

from __future__ import annotations

import numpy as np

from .grid import HeadGrid


def add_head_holder(hu: np.ndarray, air: np.ndarray, grid: HeadGrid, rng: np.random.Generator,
                    head_semi_axes_mm: tuple[float, float]) -> None:
    """Paint a curved holder shell and its pad behind the head, in air only (in place)."""
    g = grid.geometry
    _, rows, cols = g.shape
    # Patient x, y of every pixel: x along the rows' direction, y along the columns' (tilt leaves x alone).
    px = g.positions[0, 0] + np.arange(cols, dtype=np.float32) * np.float32(g.row_cosine[0] * g.pixel_spacing[1])
    py = grid.patient_y[:, :, 0]  # (n, rows)
    cx, cy = float(grid.head_center[0]), float(grid.head_center[1])
    gap = float(rng.uniform(4, 12))
    a, b = head_semi_axes_mm[0] + gap, head_semi_axes_mm[1] + gap
    shell = float(rng.uniform(2.5, 5.0))
    pad = float(rng.uniform(0.0, gap))
    dx, dy = px[None, None, :] - cx, py[:, :, None] - cy
    r = np.sqrt((dx / a) ** 2 + (dy / b) ** 2) * np.float32(min(a, b))  # ~ mm from the holder's centre
    behind = dy > 0.2 * b
    inner = min(a, b)
    shell_mask = behind & (r > inner) & (r < inner + shell) & air
    pad_mask = behind & (r > inner - pad) & (r <= inner) & air
    hu[pad_mask] = float(rng.uniform(-900, -750))
    hu[shell_mask] = float(rng.uniform(-150, 250))


def reconstruction_circle(shape: tuple[int, int, int]) -> np.ndarray:
    """(rows, columns) mask of the pixels inside the reconstructed field of view."""
    _, rows, cols = shape
    radius = min(rows, cols) / 2.0
    i = np.arange(rows, dtype=np.float32)[:, None] - (rows - 1) / 2.0
    j = np.arange(cols, dtype=np.float32)[None, :] - (cols - 1) / 2.0
    return i**2 + j**2 <= radius**2
