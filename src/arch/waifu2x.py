"""waifu2x's vgg_7: 7 unpadded conv layers, LeakyReLU(0.1), nearest pre-upsampling (seed Table 4)."""

from src.arch.conv_stack import ConvStack


class Waifu2x(ConvStack):
    widths = (32, 32, 64, 64, 128, 128)
    padding = "valid"
    negative_slope = 0.1
    upsample = "nearest"
