"""How training items are cut and fed: what stage 2 learns must lie where the cascade will look for it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from model_phantoms import TINY_CONFIG, geometry, head
from scipy import ndimage

from ichvol.image import CTImage
from ichvol.models.config import ModelConfig
from ichvol.models.data import Case, stage2_items
from ichvol.models.preprocess import normalize
from ichvol.models.train import StageTrainer


@dataclass(frozen=True)
class ArrayCase(Case):
    case_id: str
    image: CTImage
    labels: np.ndarray
    layout: ClassVar[str] = "arrays in memory"

    def load_image(self) -> tuple[CTImage, np.ndarray]:
        return self.image, self.labels


@pytest.mark.parametrize("seed", range(4))
def test_stage2_labels_stay_on_their_lesion_when_the_roi_is_resized(seed):
    # 0.45 mm pixels and a ROI some 2-3 times wider than stage 2's patch, as on a real head CT; the lesion's
    # edge in the resized image (halfway between brain and blood) and its resized label must coincide.
    shape = (6, 160, 160)
    hu, labels = head(shape, lesions=((1, (3, 70, 84), (2, 24, 19)),), seed=seed, calcification=False)
    case = ArrayCase("phantom", CTImage(hu, geometry(shape, spacing=(0.45, 0.45))), labels)
    config = ModelConfig.from_dict(TINY_CONFIG)
    halfway = float(normalize(np.array([[[51.0]]]), config.preprocessing)[0].item())
    items = [item for item in stage2_items(case, config, np.random.default_rng(seed)) if item["label"].any()]
    assert items
    for item in items:
        label = item["label"][0].numpy() > 0
        bright, _ = ndimage.label(item["image"][0].float().numpy() > halfway)
        lesion = bright == np.bincount(bright[label]).argmax()  # the skull in the ROI is bright too
        offset = np.subtract(ndimage.center_of_mass(label), ndimage.center_of_mass(lesion))
        assert np.abs(offset[1:]).max() < 0.1, f"label off its lesion by {offset[1:]} pixels (y, x)"
        assert (label == lesion).mean() > 0.995


def test_training_on_hemorrhage_free_rois_does_not_warn_for_each_crop(tmp_path):
    config = ModelConfig.from_dict(TINY_CONFIG)
    item = {"image": torch.zeros((2, 8, 40, 40), dtype=torch.float16), "label": torch.zeros((1, 8, 40, 40),
            dtype=torch.uint8), "case": "negative"}
    trainer = StageTrainer(config, 2, tmp_path, torch.device("cpu"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit([item], [item], epochs=1)
    assert not [w for w in caught if "Num foregrounds 0" in str(w.message)]
