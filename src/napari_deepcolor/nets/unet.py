"""A configurable U-Net (Ronneberger et al. 2015), the backbone every method shares."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import DeepColorError
from .position import CHANNELS_PER_PERIOD, position_channels

NORMS = ("batch", "instance", "group", "none")


@dataclass(frozen=True)
class NetConfig:
    """U-Net shape. ``depth`` poolings, ``width`` channels at the top, doubled per level.

    The default (depth 4, width 16, group norm) trains at a useful speed on two
    CPU cores; :meth:`for_device` suggests width 32 on a GPU.

    ``in_channels`` counts the image's channels only. ``position_periods`` (net pixels), if any, add
    four position channels per period after them (:mod:`.position`): the net then takes the
    window's place in the whole image as :meth:`UNet.forward`'s ``origin``. Files written before
    this field load with none.
    """

    in_channels: int = 1
    out_channels: int = 9
    depth: int = 4
    width: int = 16
    norm: str = "group"
    position_periods: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "position_periods", tuple(float(p) for p in self.position_periods))  # JSON: a list
        if any(not p > 0 for p in self.position_periods):
            raise DeepColorError(f"position periods must be positive (got {list(self.position_periods)}).")
        if not 1 <= self.depth <= 6:
            raise DeepColorError(f"net depth must be in [1, 6] (got {self.depth}).")
        if not 4 <= self.width <= 256:
            raise DeepColorError(f"net width must be in [4, 256] (got {self.width}).")
        if self.norm not in NORMS:
            raise DeepColorError(f"unknown normalisation '{self.norm}'; choose one of: {', '.join(NORMS)}.")

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** self.depth

    @property
    def position_channels(self) -> int:
        """The net's input channels after the image's: the position encoding's (0: none)."""
        return CHANNELS_PER_PERIOD * len(self.position_periods)

    def to_dict(self) -> dict:
        config = asdict(self)
        if not self.position_periods:  # files without position input stay as they were
            del config["position_periods"]
        else:
            config["position_periods"] = list(self.position_periods)
        return config

    @staticmethod
    def default_width(device: str) -> int:
        return 32 if str(device).startswith("cuda") else 16


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels // 4) or 1, channels)
    return nn.Identity()


def _block(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"), _norm(norm, cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"), _norm(norm, cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections; returns logits (B, out_channels, H, W)."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        widths = [config.width * 2**i for i in range(config.depth + 1)]
        self.down = nn.ModuleList([_block(config.in_channels + config.position_channels, widths[0], config.norm)])
        self.down.extend(_block(widths[i], widths[i + 1], config.norm) for i in range(config.depth))
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                      for i in reversed(range(config.depth)))
        self.up = nn.ModuleList(_block(2 * widths[i], widths[i], config.norm) for i in reversed(range(config.depth)))
        self.head = nn.Conv2d(widths[0], config.out_channels, 1)

    def forward(self, x: torch.Tensor, origin=None, spacing=None) -> torch.Tensor:
        """Logits (B, out_channels, H, W) of images ``x`` (B, in_channels, H, W).

        ``origin`` and ``spacing`` (y, x; (2,) or (B, 2)) place the windows in their whole images for
        a net with position input (:func:`.position.position_channels`; defaults: the window's own
        coordinates, 0 at its corner, which a tiled prediction must not rely on); ignored without one.
        """
        if self.config.position_periods:
            x = torch.cat([x, position_channels((x.shape[0], *x.shape[-2:]), self.config.position_periods,
                                                origin=origin, spacing=spacing, device=x.device, dtype=x.dtype)], 1)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for upsample, block in zip(self.upsample, self.up):
            x = block(torch.cat([skips.pop(), upsample(x)], dim=1))
        return self.head(x)


def build_net(config: NetConfig) -> UNet:
    return UNet(config)
