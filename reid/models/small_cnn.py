"""A small random-init CNN for small runs: blocks of a 3x3 convolution, BatchNorm, ReLU and a 2x2 max-pool."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class SmallCnn(nn.Module):
    """``[B, 3, H, W]`` -> ``[B, channels[-1], H / 2^n, W / 2^n]`` for ``n = len(channels)`` blocks (4: stride 16).

    Convolutions are He-initialised.
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(f"model.vision_config.channels must be positive channel counts, got {list(channels)}")
        blocks, cin = [], 3
        for cout in channels:
            blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                        nn.ReLU(inplace=True), nn.MaxPool2d(2)))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = int(cin)
        self.output_stride = 2 ** len(channels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)
