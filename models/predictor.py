"""The public inference API: `CascadePredictor.from_folder(path).predict(ct_image) -> Prediction`."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ichvol.errors import InputError, NotAHeadCTError
from ichvol.geometry import VolumeGeometry
from ichvol.image import CTImage
from ichvol.labels import Hemorrhage
from ichvol.results import AlgorithmInfo

from .cascade import (
    RoiOutput,
    Stage1Findings,
    head_sweep_box,
    hemorrhage_labels,
    outside_rois,
    stage1_findings,
    stage2_output,
    stage_probabilities,
)
from .config import CascadeSettings, ModelConfig
from .folder import TYPE_NETWORK, load_networks, read_config
from .postprocess import (
    CAVITY_MEDIAN_HU,
    SIDE_MIN_ML,
    Spare,
    drop_implausible_components,
    drop_small_components,
    drop_thin_films,
    drop_unsupported_components,
    grow_rim,
    intracranial_mask,
    lacks_cranial_cavity,
    retype_detached_extra_axial,
    side_contrast_hu,
)
from .preprocess import head_box, normalize, slice_spacing_or_default

log = logging.getLogger(__name__)

EXTRA_AXIAL = (int(Hemorrhage.SDH), int(Hemorrhage.EDH))
# The cascade settings that act after the networks (`labels_from`): the rest change what the networks see.
# `head_sweep` is both: outputs made with it on replay with it off, not the other way.
AFTER_NETWORK_SETTINGS = (
    "stage2_min_probability", "intracranial_gate", "component_median_hu", "min_stage1_support_near_bone",
    "min_film_depth_fraction", "film_depth_mm", "film_types", "min_side_contrast_hu", "retype_detached_extra_axial",
    "rim_growth_hu", "rim_growth_types", "max_voxel_hu", "min_component_ml", "head_sweep",
)
RoiBox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # (z0, z1), (y0, y1), (x0, x1), stop excl.


@dataclass
class Prediction:
    labels: np.ndarray  # uint8 (z, y, x) on the image's own grid, values from ichvol.labels
    seconds_stage1: float
    seconds_stage2: float
    seconds_total: float
    rois: list[RoiBox] = field(default_factory=list)

    def volumes_ml(self, voxel_volumes_ml: np.ndarray) -> dict[Hemorrhage, float]:
        """Volume per type, given the geometry's per-slice voxel volumes."""
        per_slice = {h: (self.labels == int(h)).sum(axis=(1, 2)) for h in Hemorrhage}
        return {h: float((counts * voxel_volumes_ml).sum()) for h, counts in per_slice.items()}


@dataclass
class NetworkOutputs:
    """What the two networks say about one image, before any threshold or rule: stage 1's findings, stage 2's
    output over each of its ROIs and, with `cascade.head_sweep`, over the whole head (`sweep`). Kept, they let the
    threshold and the rules be tried again without the networks (`CascadePredictor.labels_from`;
    benchmarks/rule_replay.py)."""

    findings: Stage1Findings
    rois: list[RoiOutput]
    seconds_stage1: float
    seconds_stage2: float
    sweep: RoiOutput | None = None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA device is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}: expected auto, cpu or cuda")
    return torch.device(device)


class CascadePredictor:
    """Both stages of one model folder, loaded once."""

    def __init__(self, config: ModelConfig, networks: dict[int | str, torch.nn.Module], folder: Path | None = None):
        self.config = config
        self.networks = networks
        self.folder = folder

    @classmethod
    def from_folder(cls, path: Path, device: str = "auto") -> CascadePredictor:
        config = read_config(Path(path))
        networks = load_networks(Path(path), config, resolve_device(device))
        log.info("loaded model %s %s from %s", config.name, config.version, path)
        return cls(config, networks, Path(path))

    def with_inference_settings(self, settings: Mapping[str, object]) -> CascadePredictor:
        """The same networks applied with other inference settings (see ModelConfig.with_inference_settings)."""
        return CascadePredictor(self.config.with_inference_settings(settings), self.networks, self.folder)

    @property
    def algorithm(self) -> AlgorithmInfo:
        return AlgorithmInfo(name=self.config.name, version=self.config.version)

    def predict(self, image: CTImage) -> Prediction:
        hu = _checked_hu(image)
        outputs = self._network_outputs(hu, image.geometry)
        start = time.perf_counter()
        labels = self._labels(outputs, hu, image.geometry)
        rules = time.perf_counter() - start
        log.info("cascade: %d ROI(s)%s, stage 1 %.2f s, stage 2 %.2f s, rules %.2f s", len(outputs.rois),
                 " and the head sweep" if outputs.sweep is not None else "", outputs.seconds_stage1,
                 outputs.seconds_stage2, rules)
        return Prediction(
            labels=labels,
            seconds_stage1=outputs.seconds_stage1,
            seconds_stage2=outputs.seconds_stage2 + rules,
            seconds_total=outputs.seconds_stage1 + outputs.seconds_stage2 + rules,
            rois=[tuple((int(s.start), int(s.stop)) for s in roi.box) for roi in outputs.rois],
        )

    def network_outputs(self, image: CTImage) -> NetworkOutputs:
        """Both networks on one image, before the stage-2 threshold and the rules (`labels_from` applies them)."""
        return self._network_outputs(_checked_hu(image), image.geometry)

    def _network_outputs(self, hu: np.ndarray, geometry: VolumeGeometry) -> NetworkOutputs:
        start = time.perf_counter()
        if self.config.cascade.require_cranial_cavity and lacks_cranial_cavity(hu, geometry.pixel_spacing):
            raise NotAHeadCTError(
                "no cranial cavity found: no slice shows soft tissue of brain-like density (median "
                f"{CAVITY_MEDIAN_HU[0]:g} to {CAVITY_MEDIAN_HU[1]:g} HU) enclosed by bone. This model judges head CT "
                "only; a phantom, a skull-stripped or a non-head image is refused"
            )
        spacing = slice_spacing_or_default(geometry.slice_spacing)
        findings = stage1_findings(self.networks[1], hu, geometry.pixel_spacing, spacing, self.config)
        after_stage1 = time.perf_counter()
        rois = []
        for box in findings.boxes:
            rois.append(stage2_output(self.networks[2], hu, box, geometry.pixel_spacing, self.config, findings,
                                      self.networks.get(TYPE_NETWORK)))
        sweep = None
        if self.config.cascade.head_sweep:
            sweep = stage2_output(self.networks[2], hu, head_sweep_box(findings, hu.shape), geometry.pixel_spacing,
                                  self.config, findings)
        return NetworkOutputs(findings, rois, after_stage1 - start, time.perf_counter() - after_stage1, sweep)

    def labels_from(self, outputs: NetworkOutputs, image: CTImage) -> np.ndarray:
        """The label map of `outputs` (from `network_outputs` on `image`): stage 2's threshold, then the rules, as
        this predictor's settings say."""
        return self._labels(outputs, _checked_hu(image), image.geometry)

    def _labels(self, outputs: NetworkOutputs, hu: np.ndarray, geometry: VolumeGeometry) -> np.ndarray:
        labels = np.zeros(hu.shape, dtype=np.uint8)
        threshold = self.config.cascade.stage2_min_probability
        for roi in outputs.rois:
            found = roi.labels(threshold)
            # Overlapping ROIs (possible after squaring) only add hemorrhage, never erase it.
            region = labels[roi.box]
            region[found > 0] = found[found > 0]
        if self.config.cascade.head_sweep:
            if outputs.sweep is None:
                raise InputError("cascade.head_sweep is on, but these network outputs hold no sweep of the head "
                                 "(they were made with it off)")
            found = outside_rois(outputs.sweep, outputs.rois, threshold)
            labels[outputs.sweep.box][found > 0] = found[found > 0]
        apply_rules(labels, hu, geometry, outputs.findings, self.config.cascade)
        return labels

    def predict_single_stage(self, image: CTImage, stage: int = 2) -> Prediction:
        """One stage's network over the whole full-resolution head crop by sliding window: the
        non-cascaded baseline for benchmarks (timing and memory; stage 2 was trained on ROIs only)."""
        hu = _checked_hu(image)
        start = time.perf_counter()
        head = head_box(hu, self.config.preprocessing, image.geometry.pixel_spacing)
        probs = stage_probabilities(self.networks[stage], normalize(hu[head], self.config.preprocessing),
                                    self.config.stage(stage), self.config.cascade)
        labels = np.zeros(hu.shape, dtype=np.uint8)
        labels[head] = hemorrhage_labels(probs, self.config.cascade.stage2_min_probability)
        seconds = time.perf_counter() - start
        return Prediction(labels=labels, seconds_stage1=seconds if stage == 1 else 0.0,
                          seconds_stage2=seconds if stage == 2 else 0.0, seconds_total=seconds, rois=[])


def apply_rules(labels: np.ndarray, hu: np.ndarray, geometry: VolumeGeometry, findings: Stage1Findings,
                cascade: CascadeSettings) -> None:
    """The anatomical rules after the networks (models/postprocess.py), in order, on `labels` in place."""
    needs_cavity = cascade.intracranial_gate or cascade.min_side_contrast_hu is not None
    cavity = intracranial_mask(hu, geometry.pixel_spacing) if needs_cavity and labels.any() else None
    if cavity is not None and cascade.intracranial_gate:
        labels[~cavity] = 0
    if cascade.component_median_hu is not None:
        drop_implausible_components(labels, hu, cascade.component_median_hu)
    spare = None if cavity is None else _one_sided(hu, cavity, geometry, cascade.min_side_contrast_hu)
    if cascade.min_stage1_support_near_bone > 0 and labels.any():
        drop_unsupported_components(labels, hu, geometry.pixel_spacing, findings.foreground_probability,
                                    cascade.min_stage1_support_near_bone, spare)
    if cascade.min_film_depth_fraction > 0 and labels.any():
        drop_thin_films(labels, hu, geometry.pixel_spacing, cascade.film_labels, cascade.film_depth_mm,
                        cascade.min_film_depth_fraction, spare)
    if cascade.retype_detached_extra_axial and labels.any():
        retype_detached_extra_axial(labels, hu, geometry.pixel_spacing, EXTRA_AXIAL)
    if cascade.rim_growth_hu is not None:
        grow_rim(labels, hu, cascade.rim_growth_hu, cascade.rim_growth_labels)
    if cascade.max_voxel_hu is not None:
        labels[hu >= cascade.max_voxel_hu] = 0
    if cascade.min_component_ml > 0 and labels.any():
        drop_small_components(labels, geometry.voxel_volumes_ml(), cascade.min_component_ml)


def _one_sided(hu: np.ndarray, cavity: np.ndarray, geometry: VolumeGeometry,
               min_contrast_hu: float | None) -> Spare | None:
    """The support and film rules' exception (`cascade.min_side_contrast_hu`): a component of `SIDE_MIN_ML` or more
    beside which the inner table's band reads that much brighter than across the head; None when the setting is
    off."""
    if min_contrast_hu is None:
        return None
    voxel_ml = geometry.voxel_volumes_ml()
    judged: dict[tuple, bool] = {}  # a component the support rule spared comes to the film rule unchanged

    def one_sided(component: np.ndarray, box: tuple[slice, ...]) -> bool:
        key = (tuple((s.start, s.stop) for s in box), component.tobytes())
        if key not in judged:
            judged[key] = _judged_one_sided(component, box)
        return judged[key]

    def _judged_one_sided(component: np.ndarray, box: tuple[slice, ...]) -> bool:
        if float((component.sum(axis=(1, 2)) * voxel_ml[box[0]]).sum()) < SIDE_MIN_ML:
            return False
        contrast = side_contrast_hu(hu, cavity, component, box, geometry.pixel_spacing)
        return contrast is not None and contrast >= min_contrast_hu

    return one_sided


def _checked_hu(image: CTImage) -> np.ndarray:
    hu = np.asarray(image.hu)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise InputError(f"expected a 3D CT volume, got shape {hu.shape}")
    return hu.astype(np.float32, copy=False)

