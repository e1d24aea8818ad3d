"""A PyTorch BASNet with the official module layout and state_dict key names (test helper).

Written from the architecture description of Qin et al., "BASNet: Boundary-Aware Salient Object
Detection" (CVPR 2019) and the key names of the official checkpoint (``inconv``, ``inbn``,
``encoder1..4`` = torchvision ResNet ``layer1..4``, ``resb5_1..``, ``convbg_1..``, ``conv6d_1..``,
``outconvb``, ``outconv6..1``, ``refunet.*``).  Widths and block counts come from a
:class:`basnet_cli.model.config.BASNetConfig`, so the tests can use the tiny preset too.

Input: ImageNet-normalised NCHW floats.  Output: sigmoid of ``[refined, d1, ..., d6, db]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from basnet_cli.model.config import BASNetConfig


def _conv3x3(cin: int, cout: int, *, stride: int = 1, dilation: int = 1,
             bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation,
                     bias=bias)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(2, 2, ceil_mode=True)


def _up(factor: int) -> nn.Upsample:
    return nn.Upsample(scale_factor=factor, mode="bilinear")


class BasicBlock(nn.Module):
    """ResNet basic block (torchvision key names: conv1, bn1, conv2, bn2, downsample.0/1)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(cout, cout, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(cin, cout, stride)]
    layers += [BasicBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class RefUnet(nn.Module):
    """Residual refinement module: conv0, 4 x (conv/bn + pool), conv5/bn5, 4 decoder stages."""

    def __init__(self, in_ch: int, width: int) -> None:
        super().__init__()
        self.conv0 = _conv3x3(in_ch, width)
        for i in range(1, 6):
            setattr(self, f"conv{i}", _conv3x3(width, width))
            setattr(self, f"bn{i}", nn.BatchNorm2d(width))
        for i in range(1, 5):
            setattr(self, f"pool{i}", _pool())
        for i in range(4, 0, -1):
            setattr(self, f"conv_d{i}", _conv3x3(2 * width, width))
            setattr(self, f"bn_d{i}", nn.BatchNorm2d(width))
        self.conv_d0 = _conv3x3(width, 1)
        self.relu = nn.ReLU(inplace=True)
        self.upscore2 = _up(2)

    def _cbr(self, x: torch.Tensor, conv: str, bn: str) -> torch.Tensor:
        return self.relu(getattr(self, bn)(getattr(self, conv)(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hx = self.conv0(x)
        skips = []
        for i in range(1, 5):
            hx = self._cbr(hx, f"conv{i}", f"bn{i}")
            skips.append(hx)
            hx = getattr(self, f"pool{i}")(hx)
        hx = self._cbr(hx, "conv5", "bn5")
        for i in range(4, 0, -1):
            hx = self.upscore2(hx)
            hx = self._cbr(torch.cat((hx, skips[i - 1]), 1), f"conv_d{i}", f"bn_d{i}")
        return x + self.conv_d0(hx)


class TorchBASNet(nn.Module):
    """BASNet with the official key names, sized by a :class:`BASNetConfig`."""

    def __init__(self, config: BASNetConfig) -> None:
        super().__init__()
        if not config.stem_bn:
            raise ValueError("the official layout has BN + ReLU after the input conv")
        c = config
        self.config = c
        self.inconv = _conv3x3(3, c.stem_width)
        self.inbn = nn.BatchNorm2d(c.stem_width)
        self.relu = nn.ReLU(inplace=True)

        cin = c.stem_width
        for s, (blocks, width) in enumerate(zip(c.encoder_blocks, c.encoder_widths), 1):
            setattr(self, f"encoder{s}", _stage(cin, width, blocks, 1 if s == 1 else 2))
            cin = width
        deep = c.encoder_widths[-1]
        self.pool4 = _pool()
        self.pool5 = _pool()
        for s in (5, 6):
            for b in range(1, c.extra_blocks + 1):
                setattr(self, f"resb{s}_{b}", BasicBlock(deep, deep))

        d = c.bridge_dilation
        for suffix in ("1", "m", "2"):
            setattr(self, f"convbg_{suffix}", _conv3x3(deep, deep, dilation=d))
            setattr(self, f"bnbg_{suffix}", nn.BatchNorm2d(deep))

        # Decoder stages 6d..1d: input = [deeper feature, encoder feature of that resolution].
        skip_widths = (deep, deep, c.encoder_widths[3], c.encoder_widths[2],
                       c.encoder_widths[1], c.encoder_widths[0])
        prev = deep
        self.side_widths = {"b": deep}
        for stage, skip, widths in zip((6, 5, 4, 3, 2, 1), skip_widths, c.decoder_widths):
            cin = prev + skip
            for suffix, width in zip(("1", "m", "2"), widths):
                dil = 2 if (stage == 6 and suffix != "1" and c.dilate_6d) else 1
                setattr(self, f"conv{stage}d_{suffix}", _conv3x3(cin, width, dilation=dil))
                setattr(self, f"bn{stage}d_{suffix}", nn.BatchNorm2d(width))
                cin = width
            prev = cin
            self.side_widths[str(stage)] = cin

        self.outconvb = _conv3x3(deep, 1)
        for stage in (6, 5, 4, 3, 2, 1):
            setattr(self, f"outconv{stage}", _conv3x3(self.side_widths[str(stage)], 1))
        self.upscore6 = _up(32)
        self.upscore5 = _up(16)
        self.upscore4 = _up(8)
        self.upscore3 = _up(4)
        self.upscore2 = _up(2)
        self.refunet = RefUnet(1, c.refine_width)

    def _cbr(self, x: torch.Tensor, conv: str, bn: str) -> torch.Tensor:
        return self.relu(getattr(self, bn)(getattr(self, conv)(x)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        hx = self.relu(self.inbn(self.inconv(x)))
        h1 = self.encoder1(hx)
        h2 = self.encoder2(h1)
        h3 = self.encoder3(h2)
        h4 = self.encoder4(h3)

        hx = self.pool4(h4)
        for b in range(1, self.config.extra_blocks + 1):
            hx = getattr(self, f"resb5_{b}")(hx)
        h5 = hx
        hx = self.pool5(h5)
        for b in range(1, self.config.extra_blocks + 1):
            hx = getattr(self, f"resb6_{b}")(hx)
        h6 = hx

        hx = h6
        for suffix in ("1", "m", "2"):
            hx = self._cbr(hx, f"convbg_{suffix}", f"bnbg_{suffix}")
        hbg = hx

        decoded = {}
        hx = hbg
        for stage, skip in zip((6, 5, 4, 3, 2, 1), (h6, h5, h4, h3, h2, h1)):
            if stage != 6:
                hx = self.upscore2(hx)
            hx = torch.cat((hx, skip), 1)
            for suffix in ("1", "m", "2"):
                hx = self._cbr(hx, f"conv{stage}d_{suffix}", f"bn{stage}d_{suffix}")
            decoded[stage] = hx

        db = self.upscore6(self.outconvb(hbg))
        d6 = self.upscore6(self.outconv6(decoded[6]))
        d5 = self.upscore5(self.outconv5(decoded[5]))
        d4 = self.upscore4(self.outconv4(decoded[4]))
        d3 = self.upscore3(self.outconv3(decoded[3]))
        d2 = self.upscore2(self.outconv2(decoded[2]))
        d1 = self.outconv1(decoded[1])
        dout = self.refunet(d1)
        return [torch.sigmoid(t) for t in (dout, d1, d2, d3, d4, d5, d6, db)]


def randomise(model: nn.Module, seed: int = 0,
              calibration: Sequence[torch.Tensor] | None = None) -> nn.Module:
    """Give every parameter and BN statistic a random value; returns ``model`` in eval mode.

    Plain random BN statistics let activations grow through the 40-odd layers of the paper
    preset until every sigmoid saturates (a comparison of saturated maps proves little, and
    float32 rounding of huge logits dominates).  So the weights are drawn first, then each
    BN's running statistics are calibrated on ``calibration`` (normalised NCHW batches; default
    one random normal 2x3x64x64 batch; train-mode passes with a cumulative average; best at
    the sizes and input distribution of the comparison) and perturbed at random: means
    shifted by up to 0.2 std, variances scaled by 0.6..1.6.  Side-output convs get a
    1/sqrt(fan_in) scale so the logits stay O(1).
    """
    gen = torch.Generator().manual_seed(seed)

    def rand(shape: torch.Size) -> torch.Tensor:
        return torch.rand(shape, generator=gen)

    side_convs = {id(m) for name, m in model.named_modules()
                  if name.startswith("outconv") or name == "refunet.conv_d0"}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                gain = 1.0 if id(module) in side_convs else 2.0
                std = (gain / fan_in) ** 0.5
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                if module.bias is not None:
                    module.bias.copy_((rand(module.bias.shape) - 0.5) * 0.2)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(0.5 + rand(module.weight.shape))
                module.bias.copy_((rand(module.bias.shape) - 0.5) * 0.4)

        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: one batch -> its own statistics
        model.train()
        if calibration is None:
            calibration = [torch.randn((2, 3, 64, 64), generator=gen)]
        for batch in calibration:
            model(batch)
        for bn in bns:
            bn.momentum = 0.1
            std = bn.running_var.sqrt()
            bn.running_mean.add_((rand(std.shape) - 0.5) * 0.4 * std)
            bn.running_var.mul_(0.6 + rand(std.shape))
            bn.num_batches_tracked.fill_(1000)
    return model.eval()
