"""LeNet-5 (LeCun et al. 1998), modern variant: ReLU and max-pooling; any input size >= 16."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdfair.models.bank import BankConv2d, BankLinear, split_members
from kdfair.models.factories import register_model


class LeNet5(nn.Module):
    """conv5(6) - pool - conv5(16) - pool - fc120 - fc84 - fc(K), as a bank of ``members``."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 members: int = 1):
        super().__init__()
        g = self.members = members
        self.conv1 = BankConv2d(g, in_channels, 6, 5)
        self.conv2 = BankConv2d(g, 6, 16, 5)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet-5 needs inputs of at least 16 pixels, got {image_size}")
        self.fc1 = BankLinear(g, 16 * side * side, 120)
        self.fc2 = BankLinear(g, 120, 84)
        self.fc3 = BankLinear(g, 84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = split_members(x, self.members)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x[:, 0] if self.members == 1 else x


@register_model("lenet5")
def lenet5(num_classes: int, input_shape: tuple[int, ...], members: int = 1) -> nn.Module:
    return LeNet5(num_classes, in_channels=input_shape[0], image_size=input_shape[-1],
                  members=members)
