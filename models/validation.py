"""Cascade validation during training: the whole cascade, the stage being trained with the other stage's
kept weights, on the validation cases at full resolution, scored as `ichvol evaluate` scores them.

A stage's own validation (stage 2 on ROIs cut around the truth) says little about what the cascade will do:
stage 2 never sees stage 1's misses or its false alarms there. Choosing the kept epoch by the cascade's DSC
chooses by the figure the model is judged on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ichvol.errors import NotAHeadCTError

from .config import ModelConfig
from .data import Case
from .evaluation.metrics import label_volume_ml, overlap_scores
from .predictor import CascadePredictor


@dataclass(frozen=True)
class CascadeScore:
    dsc: float  # mean per-case DSC over the validation cases that hold hemorrhage; nan when none does
    false_positive_ml: float  # mean volume found in the hemorrhage-free validation cases; nan when there are none


class CascadeValidator:
    """The validation cases and the network of the stage that is not being trained.

    Each scoring reads the cases from disk again, one at a time: a full-resolution CT is about 50 MB, and a
    validation set of hundreds would otherwise sit in memory for the whole run. Reading is cheap beside the
    cascade's inference on the same case."""

    def __init__(self, config: ModelConfig, cases: list[Case], other_stage: int, other_network: torch.nn.Module):
        self.config = config
        self.other_stage = other_stage
        self.other_network = other_network.eval()
        self.cases = list(cases)
        # Whether any case can give a DSC (hemorrhage-free cases only give a false-positive volume).
        self.holds_hemorrhage = any(case.load_image()[1].any() for case in self.cases)

    def score(self, network: torch.nn.Module) -> CascadeScore:
        """The cascade with `network` as the trained stage; the network is back in its mode afterwards."""
        trained_stage = 2 if self.other_stage == 1 else 1
        predictor = CascadePredictor(self.config, {trained_stage: network, self.other_stage: self.other_network})
        was_training = network.training
        network.eval()
        dsc, false_ml = [], []
        try:
            for case in self.cases:
                image, truth = case.load_image()
                try:
                    labels = predictor.predict(image).labels
                except NotAHeadCTError:  # scored as finding nothing, as `ichvol evaluate` does
                    labels = np.zeros_like(truth)
                if truth.any():
                    dsc.append(overlap_scores(truth, labels).dsc)
                else:
                    false_ml.append(label_volume_ml(labels, image.geometry))
        finally:
            network.train(was_training)
        return CascadeScore(_mean(dsc), _mean(false_ml))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan
