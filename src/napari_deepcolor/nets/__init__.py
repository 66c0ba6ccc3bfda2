"""Backbones. A U-Net family is all the methods need."""

from .unet import NetConfig, UNet, build_net

__all__ = ["NetConfig", "UNet", "build_net"]
