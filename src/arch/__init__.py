"""The paper's four SR nets as plain ``nn.Module``s (no Lightning, no config)."""

from src.arch.cnn_deep import CNNDeep
from src.arch.cnn_medium import CNNMedium
from src.arch.cnn_small import CNNSmall
from src.arch.conv_stack import ConvStack, macs_per_pixel
from src.arch.waifu2x import Waifu2x

__all__ = ["CNNDeep", "CNNMedium", "CNNSmall", "ConvStack", "Waifu2x", "macs_per_pixel"]
