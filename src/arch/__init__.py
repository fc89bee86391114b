"""SR nets as plain ``nn.Module``s (no Lightning, no config): the paper's four, reference nets, and
published weights of other architectures (through spandrel)."""

from src.arch.cnn_deep import CNNDeep
from src.arch.cnn_medium import CNNMedium
from src.arch.cnn_small import CNNSmall
from src.arch.compact import Compact
from src.arch.conv_stack import ConvStack
from src.arch.edsr import EDSR
from src.arch.espcn import ESPCN
from src.arch.fsrcnn import FSRCNN
from src.arch.spandrel_net import SpandrelNet
from src.arch.waifu2x import Waifu2x

__all__ = ["CNNDeep", "CNNMedium", "CNNSmall", "Compact", "ConvStack", "EDSR", "ESPCN", "FSRCNN", "SpandrelNet", "Waifu2x"]
