"""Backbones. A U-Net family is all the methods need."""

from .position import random_origins
from .unet import NetConfig, UNet, build_net

__all__ = ["NetConfig", "UNet", "build_net", "random_origins"]
