"""How training items are cut: what stage 2 learns must lie where the cascade will look for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from model_phantoms import TINY_CONFIG, geometry, head
from scipy import ndimage

from ichvol.image import CTImage
from ichvol.models.config import ModelConfig
from ichvol.models.data import Case, stage2_items
from ichvol.models.preprocess import normalize


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
