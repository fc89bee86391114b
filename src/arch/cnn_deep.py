"""CNN_DEEP: 7 conv layers (seed Table 3), the paper's proposed net."""

from src.arch.conv_stack import ConvStack


class CNNDeep(ConvStack):
    widths = (32, 64, 128, 128, 64, 32)
