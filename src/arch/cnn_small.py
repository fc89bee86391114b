"""CNN_SMALL: 3 conv layers (seed Table 1)."""

from src.arch.conv_stack import ConvStack


class CNNSmall(ConvStack):
    widths = (8, 16)
