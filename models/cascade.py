"""Coarse-to-fine inference: stage 1 on the coarse head volume finds hemorrhage regions (ROIs), stage 2
segments each ROI cropped from the full-resolution volume and resized to its patch grid.

Everything happens in index space on the image's own grid, so gantry tilt and uneven slice gaps need no
resampling; only the in-plane pixel spacing (for resampling and margins) and the slice spacing (margins)
come from the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from scipy import ndimage

from .config import CascadeSettings, ModelConfig, StageConfig
from .preprocess import (
    Box,
    coarse_shape,
    enlarge,
    foreground_boxes,
    head_box,
    merge_boxes,
    normalize,
    resize,
    square_in_plane,
)

_TTA_FLIPS = ((4,), (3,), (3, 4))
# Slices of stage 2's probabilities brought to full resolution at a time (see `stage2_output`).
SLAB_SLICES = 4


def stage_probabilities(
    network: torch.nn.Module, image: torch.Tensor, stage: StageConfig, cascade: CascadeSettings
) -> torch.Tensor:
    """Softmax probabilities (C, z, y, x) of one stage over a normalised (channels, z, y, x) volume, by a
    sliding window of the stage's patch (zero-padded where the volume is smaller), overlaps averaged."""
    device = next(network.parameters()).device
    batch = image[None].to(device)
    amp = device.type == "cuda"

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, enabled=amp):
            logits = sliding_window_inference(
                x, roi_size=stage.patch_size, sw_batch_size=cascade.sliding_window_batch_size, predictor=network,
                overlap=cascade.sliding_window_overlap, mode=cascade.blend_mode,
            )
        return torch.softmax(logits.float(), dim=1)

    with torch.inference_mode():
        probs = run(batch)
        if cascade.mirror_tta:
            for dims in _TTA_FLIPS:
                probs += torch.flip(run(torch.flip(batch, dims)), dims)
            probs /= 1 + len(_TTA_FLIPS)
    return probs[0].cpu()


@dataclass(frozen=True)
class Stage1Findings:
    """What stage 1 found: the full-resolution ROI boxes for stage 2, and its probabilities (C, z, y, x) on
    the coarse grid of the head crop `head`."""

    boxes: list[Box]
    head: Box
    probabilities: torch.Tensor

    def type_probabilities(self, box: Box) -> torch.Tensor:
        """Stage 1's hemorrhage-type probabilities (C - 1, z, y, x) over a full-resolution box, interpolated
        as `resize` would to the head crop (edge values beyond it) and renormalised over the types."""
        types = self._sampled(self.probabilities[1:], box)
        return types / types.sum(0, keepdim=True).clamp_min(1e-6)

    def foreground_probability(self, box: Box) -> np.ndarray:
        """Stage 1's hemorrhage probability (1 - p(bg)), (z, y, x), over a full-resolution box, interpolated as
        `type_probabilities` is."""
        return (1.0 - self._sampled(self.probabilities[:1], box)[0]).numpy()

    def _sampled(self, channels: torch.Tensor, box: Box) -> torch.Tensor:
        axes = [
            (torch.arange(b.start - h.start, b.stop - h.start, dtype=torch.float32) + 0.5) * 2 / (h.stop - h.start)
            - 1
            for b, h in zip(box, self.head, strict=True)
        ]
        zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
        grid = torch.stack((xx, yy, zz), dim=-1)[None]
        return F.grid_sample(channels[None].float(), grid, mode="bilinear", padding_mode="border",
                             align_corners=False)[0]


def stage1_findings(
    network: torch.nn.Module, hu: np.ndarray, pixel_spacing: tuple[float, float], slice_spacing: float,
    config: ModelConfig,
) -> Stage1Findings:
    """Stage 1 on the head crop resampled in-plane to the stage's spacing; finds the full-resolution
    boxes (enlarged by the margin, nearby ones merged, squared in-plane) around what it found."""
    head = head_box(hu, config.preprocessing, pixel_spacing)
    crop = hu[head]
    shape = coarse_shape(crop.shape, pixel_spacing, config.stage1.in_plane_spacing_mm)
    image = resize(normalize(crop, config.preprocessing), shape)
    probabilities = stage_probabilities(network, image, config.stage1, config.cascade)
    coarse = (1.0 - probabilities[0]).numpy() >= config.cascade.stage1_min_probability
    scale = [crop.shape[i] / shape[i] for i in range(3)]
    boxes = []
    for box in foreground_boxes(coarse, config.cascade.min_roi_voxels):
        boxes.append(tuple(
            slice(offset.start + int(np.floor(s.start * f)), offset.start + int(np.ceil(s.stop * f)))
            for s, f, offset in zip(box, scale, head, strict=True)
        ))
    boxes = roi_boxes(boxes, hu.shape, pixel_spacing, slice_spacing, config.cascade)
    return Stage1Findings(boxes, head, probabilities)


def roi_boxes(
    boxes: list[Box], shape: tuple[int, int, int], pixel_spacing: tuple[float, float], slice_spacing: float,
    cascade: CascadeSettings, margin_scale: float = 1.0,
) -> list[Box]:
    """Enlarge, merge and square hemorrhage boxes (full-resolution indices) the way the cascade does."""
    margin = (
        cascade.roi_margin_slices,
        int(round(margin_scale * cascade.roi_margin_mm / pixel_spacing[0])),
        int(round(margin_scale * cascade.roi_margin_mm / pixel_spacing[1])),
    )
    gap = (
        max(1, int(round(cascade.merge_distance_mm / max(slice_spacing, 1e-3)))),
        int(round(cascade.merge_distance_mm / pixel_spacing[0])),
        int(round(cascade.merge_distance_mm / pixel_spacing[1])),
    )
    boxes = merge_boxes([enlarge(b, margin, shape) for b in boxes], gap)
    return [square_in_plane(b, shape) for b in boxes]


def roi_input_shape(box: Box, stage: StageConfig, pixel_spacing: tuple[float, float]) -> tuple[int, int, int]:
    """Stage 2 sees a ROI with its slices kept and the (square) in-plane extent resized to the patch, or to
    finer pixels when the stage sets `roi_max_spacing_mm` (the sliding window then covers it)."""
    side = stage.patch_size[1]
    if stage.roi_max_spacing_mm:
        extent_mm = (box[1].stop - box[1].start) * pixel_spacing[0]
        side = max(side, int(round(extent_mm / stage.roi_max_spacing_mm)))
    return (box[0].stop - box[0].start, side, side)


@dataclass(frozen=True)
class RoiOutput:
    """Stage 2's verdict over one ROI, on the ROI's full-resolution grid, before any threshold: each voxel's
    hemorrhage probability (1 - p(bg)) and its most probable hemorrhage type (a label value). `added`: the type
    network's verdict (probability and type) where it may add blood to stage 2's (zero elsewhere)."""

    box: Box
    foreground: np.ndarray  # float32 (z, y, x)
    kind: np.ndarray  # uint8 (z, y, x), 1..C-1
    added: tuple[np.ndarray, np.ndarray] | None = None

    def labels(self, min_probability: float) -> np.ndarray:
        """uint8 labels: the type where the hemorrhage probability reaches `min_probability`, else 0; then, where
        that leaves 0, the type network's type where its probability reaches it, in the regions that touch what
        stage 2 found (it grows stage 2's findings; it never starts one of its own)."""
        labels = _thresholded(self.foreground, self.kind, min_probability)
        if self.added is not None:
            extra = _thresholded(*self.added, min_probability)
            extra[labels > 0] = 0
            labels += extra * _touching(extra > 0, labels > 0)
        return labels


def _touching(candidates: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The `candidates` whose connected region (face-connected, together with `found`) holds a `found` voxel."""
    regions, _ = ndimage.label(candidates | found)
    kept = np.unique(regions[found])
    return np.isin(regions, kept[kept > 0]) & candidates


def head_sweep_box(findings: Stage1Findings, shape: tuple[int, int, int]) -> Box:
    """The box stage 2 sweeps when `cascade.head_sweep` is on: stage 1's head crop, squared in-plane."""
    return square_in_plane(findings.head, shape)


def outside_rois(sweep: RoiOutput, rois: list[RoiOutput], min_probability: float) -> np.ndarray:
    """The sweep's labels (on its box's grid) with every ROI's box cleared: there the ROI's own verdict stands."""
    labels = sweep.labels(min_probability)
    for roi in rois:
        labels[tuple(slice(max(r.start, s.start) - s.start, max(min(r.stop, s.stop) - s.start, 0))
                     for r, s in zip(roi.box, sweep.box, strict=True))] = 0
    return labels


def stage2_output(network: torch.nn.Module, hu: np.ndarray, box: Box, pixel_spacing: tuple[float, float],
                  config: ModelConfig, findings: Stage1Findings | None = None,
                  type_network: torch.nn.Module | None = None, slab_slices: int = SLAB_SLICES) -> RoiOutput:
    """Stage 2 on one ROI. `findings`: stage 1's, whose type probabilities weigh stage 2's types (see `weigh_types`
    and `split_types`) as the cascade settings say, and whose hemorrhage probability gates the type network's
    additions. `type_network`: a second stage-2 network that settles the types of `cascade.type_ensemble_types`
    with it (geometric mean of the two networks' type probabilities) and may add blood of
    `cascade.type_network_adds_types`.

    The networks see the whole ROI; their probabilities are brought to full resolution and judged `slab_slices`
    slices at a time. Stage 2 keeps a ROI's slices, so the resize is in-plane only and the slabs' verdicts are
    the whole ROI's, with the memory of a few slices' probabilities instead of all of them."""
    crop = hu[box]
    image = resize(normalize(crop, config.preprocessing), roi_input_shape(box, config.stage2, pixel_spacing))
    cascade = config.cascade
    probs = stage_probabilities(network, image, config.stage2, cascade)
    second = None
    if type_network is not None and cascade.uses_type_network:
        second = stage_probabilities(type_network, image, config.stage2, cascade)
    foreground = np.empty(crop.shape, np.float32)
    kind = np.empty(crop.shape, np.uint8)
    added = None
    step = max(1, slab_slices)
    for start in range(0, crop.shape[0], step):
        slab = slice(start, min(start + step, crop.shape[0]))
        slab_box = (slice(box[0].start + slab.start, box[0].start + slab.stop), box[1], box[2])
        verdict = _slab_verdict(probs[:, slab], None if second is None else second[:, slab], slab_box,
                                crop.shape[1:], findings, cascade)
        foreground[slab], kind[slab] = verdict[0], verdict[1]
        if verdict[2] is not None:
            if added is None:
                added = (np.zeros(crop.shape, np.float32), np.zeros(crop.shape, np.uint8))
            added[0][slab], added[1][slab] = verdict[2]
    return RoiOutput(box, foreground, kind, added)


def _slab_verdict(probs: torch.Tensor, second: torch.Tensor | None, box: Box, plane: tuple[int, int],
                  findings: Stage1Findings | None, cascade: CascadeSettings,
                  ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """`stage2_output`'s verdict (foreground, kind, type network's additions) over the slices `box` of its ROI, from
    the networks' probabilities over those slices on the ROI's input grid."""
    shape = (probs.shape[1], *plane)
    prior = findings.type_probabilities(box) if findings is not None and cascade.stage1_type_prior else None
    probs = resize(probs, shape)
    foreground, kind = _foreground_and_kind(probs, prior, cascade.stage1_type_prior_labels)
    types = probs[1:]
    added = None
    if second is not None:
        second = resize(second, shape)
        if cascade.type_ensemble_labels is not None:
            types = (types * second[1:]).sqrt()
            split_types(kind, types, cascade.type_ensemble_labels)
        if cascade.type_network_adds_labels is not None and findings is not None:
            added = type_network_additions(second, findings.foreground_probability(box), cascade)
    if prior is not None and cascade.stage1_type_split_labels is not None:
        split_types(kind, types, cascade.stage1_type_split_labels, prior, cascade.stage1_type_split_exponent)
    return foreground, kind, added


def type_network_additions(probabilities: torch.Tensor, support: np.ndarray,
                           cascade: CascadeSettings) -> tuple[np.ndarray, np.ndarray]:
    """The type network's hemorrhage probability and type where it may add blood: its most probable type is one of
    `type_network_adds_types` and stage 1's hemorrhage probability (`support`) reaches
    `type_network_min_stage1_support`; 0 elsewhere."""
    foreground, kind = _foreground_and_kind(probabilities, None, None)
    allowed = np.isin(kind, cascade.type_network_adds_labels) & (support >= cascade.type_network_min_stage1_support)
    return np.where(allowed, foreground, 0.0).astype(np.float32), kind


def hemorrhage_labels(probabilities: torch.Tensor, min_probability: float, type_prior: torch.Tensor | None = None,
                      prior_labels: tuple[int, ...] | None = None) -> np.ndarray:
    """(C, z, y, x) probabilities -> uint8 labels: hemorrhage where 1 - p(bg) >= min_probability, of the most
    probable hemorrhage type (weighed by `type_prior`, (C - 1, z, y, x), when given: see `weigh_types`)."""
    foreground, kind = _foreground_and_kind(probabilities, type_prior, prior_labels)
    return _thresholded(foreground, kind, min_probability)


def _foreground_and_kind(probabilities: torch.Tensor, type_prior: torch.Tensor | None,
                         prior_labels: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    types = probabilities[1:] if type_prior is None else weigh_types(probabilities[1:], type_prior, prior_labels)
    kind = (types.argmax(0) + 1).numpy().astype(np.uint8)
    return (1.0 - probabilities[0]).numpy(), kind


def _thresholded(foreground: np.ndarray, kind: np.ndarray, min_probability: float) -> np.ndarray:
    return np.where(foreground >= min_probability, kind, 0).astype(np.uint8)


def split_types(kind: np.ndarray, types: torch.Tensor, group: tuple[int, ...], prior: torch.Tensor | None = None,
                exponent: float = 1.0) -> None:
    """Give (in place) each voxel of `kind` (label values) that holds one of `group` the one of `group` with the most
    type probability (`types`, C - 1, z, y, x), times stage 1's (`prior`, same shape) ** `exponent` when given.
    Voxels of other types, and which voxels hold one of `group`, are unchanged."""
    inside = np.isin(kind, group)
    if not inside.any():
        return
    index = [label - 1 for label in group]
    weighed = types[index] if prior is None else types[index] * prior[index].clamp_min(1e-12) ** exponent
    chosen = weighed.argmax(0).numpy()
    kind[inside] = np.asarray(group, dtype=kind.dtype)[chosen[inside]]


def weigh_types(types: torch.Tensor, prior: torch.Tensor, among: tuple[int, ...] | None = None) -> torch.Tensor:
    """Type probabilities (C - 1, ...) times a prior's. With `among` (label values), only the split between those
    types is weighed: their summed probability stays the unweighed one, so the prior cannot move a voxel into or
    out of them."""
    if among is None:
        return types * prior
    index = [label - 1 for label in among]
    part = types[index] * prior[index]
    part = part / part.sum(0, keepdim=True).clamp_min(1e-12) * types[index].sum(0, keepdim=True)
    weighed = types.clone()
    weighed[index] = part
    return weighed
