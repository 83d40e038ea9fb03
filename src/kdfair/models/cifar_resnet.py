"""The CIFAR ResNets of He et al. 2016 (depth 6n+2; option-A shortcuts), as banks of members."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfair.models.bank import BankBatchNorm2d, BankConv2d, BankLinear, pad_channels
from kdfair.models.factories import register_model

DEPTHS = (8, 14, 20, 32, 56, 110)


class Block(nn.Module):
    def __init__(self, g: int, cin: int, cout: int, stride: int):
        super().__init__()
        self.g, self.extra = g, (cout - cin) // 2
        self.conv1 = BankConv2d(g, cin, cout, 3, stride, 1, bias=False)
        self.bn1 = BankBatchNorm2d(g, cout)
        self.conv2 = BankConv2d(g, cout, cout, 3, 1, 1, bias=False)
        self.bn2 = BankBatchNorm2d(g, cout)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.extra:
            short = pad_channels(x[:, :, :: self.stride, :: self.stride], self.g, self.extra)
        return F.relu(out + short)


class CifarResNet(nn.Module):
    """conv3x3(w) + 3 stages of n basic blocks (w, 2w, 4w) + global average pool + linear."""

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3, width: int = 16,
                 members: int = 1):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (8, 14, 20, …), got {depth}")
        n, g = (depth - 2) // 6, members
        self.members = g
        self.conv = BankConv2d(g, in_channels, width, 3, 1, 1, bias=False)
        self.bn = BankBatchNorm2d(g, width)
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(Block(g, cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = BankLinear(g, cin, num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = x.mean(dim=(2, 3)).reshape(x.shape[0], self.members, -1)
        x = self.fc(x)
        return x[:, 0] if self.members == 1 else x


def _factory(depth: int):
    def make(num_classes: int, input_shape: tuple[int, ...], members: int = 1,
             width: int = 16) -> nn.Module:
        return CifarResNet(depth, num_classes, input_shape[0], width, members)

    return make


for _d in DEPTHS:
    register_model(f"resnet{_d}", _factory(_d))
