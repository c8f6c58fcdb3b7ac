"""The cascaded 3D UNet: configs, networks, training, the predictor and the shipped model zoo."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "ichvol-small"


def default_model_path() -> Path:
    """The shipped model folder inside the package (models/zoo/<name>)."""
    return Path(__file__).resolve().parent / "zoo" / DEFAULT_MODEL_NAME
