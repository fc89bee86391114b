"""CNN_MEDIUM: 5 conv layers (seed Table 2)."""

from src.arch.conv_stack import ConvStack


class CNNMedium(ConvStack):
    widths = (16, 32, 64, 32)
