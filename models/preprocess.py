"""Intensity normalisation, head cropping and in-plane resampling shared by training and inference."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .config import Preprocessing

Box = tuple[slice, slice, slice]

DEFAULT_SLICE_SPACING_MM = 5.0  # for a one-slice volume, which has no spacing of its own


def slice_spacing_or_default(spacing: float) -> float:
    """The slice spacing (mm) that margins and merging use: the volume's own, or the default without one."""
    return spacing if spacing > 0 else DEFAULT_SLICE_SPACING_MM


def normalize(hu: np.ndarray | torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """HU (z, y, x) -> float32 (channels, z, y, x): each window clipped and mapped to [0, 1]."""
    hu_t = torch.as_tensor(np.asarray(hu) if not isinstance(hu, torch.Tensor) else hu, dtype=torch.float32)
    channels = [((hu_t - (w.level - w.width / 2)) / w.width).clamp_(0.0, 1.0) for w in pre.windows]
    return torch.stack(channels)


def head_box(hu: np.ndarray, pre: Preprocessing, pixel_spacing: tuple[float, float]) -> Box:
    """In-plane bounding box of the largest connected head region (all slices kept), with a margin.
    Falls back to the whole image when nothing is above the threshold."""
    body = np.asarray(hu) > pre.head_threshold_hu
    footprint = body.any(axis=0)
    labels, count = ndimage.label(footprint)
    if count == 0:
        return (slice(0, hu.shape[0]), slice(0, hu.shape[1]), slice(0, hu.shape[2]))
    sizes = ndimage.sum_labels(footprint, labels, index=np.arange(1, count + 1))
    ys, xs = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    my = int(round(pre.head_margin_mm / pixel_spacing[0]))
    mx = int(round(pre.head_margin_mm / pixel_spacing[1]))
    return (
        slice(0, hu.shape[0]),
        slice(max(0, ys.min() - my), min(hu.shape[1], ys.max() + 1 + my)),
        slice(max(0, xs.min() - mx), min(hu.shape[2], xs.max() + 1 + mx)),
    )


def coarse_shape(shape_zyx: tuple[int, int, int], pixel_spacing: tuple[float, float], target_mm: float):
    """Shape after in-plane resampling to `target_mm` (the slice axis is kept: slices are thick already)."""
    z, y, x = shape_zyx
    return (z, max(1, round(y * pixel_spacing[0] / target_mm)), max(1, round(x * pixel_spacing[1] / target_mm)))


def resize(volume: torch.Tensor, shape: tuple[int, int, int], mode: str = "trilinear") -> torch.Tensor:
    """Resize a (C, z, y, x) tensor. mode "trilinear" for images and probabilities, "nearest-exact" for labels.

    Both sample at pixel centres (trilinear with align_corners=False), so a label resized with the image stays
    on it. (Torch's plain "nearest" samples at pixel corners: resized 2.2 times smaller, a label lands a
    native pixel away from its image, and training on flipped copies of that smears the edges.)"""
    if tuple(volume.shape[1:]) == tuple(shape):
        return volume
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(volume[None].float(), size=tuple(shape), mode=mode, **kwargs)[0]


def downsample_labels(labels: torch.Tensor, shape: tuple[int, int, int], num_classes: int) -> torch.Tensor:
    """Label map (z, y, x) -> coarser (z, y, x) by area fractions, keeping small lesions: a coarse voxel is
    hemorrhage when at least a quarter of it is, of the type covering most of it."""
    onehot = F.one_hot(labels.long(), num_classes).permute(3, 0, 1, 2).float()
    frac = F.interpolate(onehot[None], size=tuple(shape), mode="area")[0]
    fg = frac[1:].sum(0) >= 0.25
    kind = frac[1:].argmax(0) + 1
    return torch.where(fg, kind, torch.zeros_like(kind)).to(torch.uint8)


def foreground_boxes(mask: np.ndarray, min_voxels: int) -> list[Box]:
    """Bounding boxes of the connected components of a boolean (z, y, x) mask."""
    labels, count = ndimage.label(mask)
    boxes = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None and int((labels[box] == index).sum()) >= min_voxels:
            boxes.append(box)
    return boxes


def enlarge(box: Box, margin: tuple[int, int, int], shape: tuple[int, int, int]) -> Box:
    return tuple(
        slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, margin, shape, strict=True)
    )


def square_in_plane(box: Box, shape: tuple[int, int, int]) -> Box:
    """Grow the shorter in-plane side so the box is square (so that resizing it keeps the aspect ratio)."""
    z, y, x = box
    side = max(y.stop - y.start, x.stop - x.start)

    def grow(s: slice, n: int) -> slice:
        if side >= n:  # the image is narrower than the box along this axis: take all of it
            return slice(0, n)
        extra = side - (s.stop - s.start)
        start = max(0, min(s.start - extra // 2, n - side))
        return slice(start, start + side)

    return (z, grow(y, shape[1]), grow(x, shape[2]))


def merge_boxes(boxes: list[Box], gap: tuple[int, int, int]) -> list[Box]:
    """Merge boxes that overlap or lie closer than `gap` voxels (per axis) until none do."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if all(a.start < b.stop + g and b.start < a.stop + g
                       for a, b, g in zip(boxes[i], boxes[j], gap, strict=True)):
                    boxes[i] = tuple(slice(min(a.start, b.start), max(a.stop, b.stop))
                                     for a, b in zip(boxes[i], boxes[j], strict=True))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes
