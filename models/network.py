"""The per-stage network: MONAI's DynUNet (residual blocks, batch norm, deep supervision)."""

from __future__ import annotations

from monai.networks.nets import DynUNet

from .config import StageConfig


def build_network(stage: StageConfig, in_channels: int, out_channels: int) -> DynUNet:
    """A DynUNet with two convs (3x3x3 or in-plane 1x3x3, per the config) per level, each followed by batch
    norm and ReLU, residual blocks, skip connections and `deep_supr_num` deep-supervision heads on the
    decoder levels."""
    return DynUNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=[tuple(k) for k in stage.kernel_sizes],
        strides=[tuple(s) for s in stage.strides],
        upsample_kernel_size=[tuple(s) for s in stage.strides[1:]],
        filters=list(stage.filters),
        norm_name="batch",
        act_name=("relu", {"inplace": True}),
        deep_supervision=stage.deep_supr_num > 0,
        deep_supr_num=max(stage.deep_supr_num, 1),
        res_block=True,
    )
