"""The training losses by the name `model.loss` gives (a module of its own: the config checks read the
names without importing Lightning)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"mse": F.mse_loss, "l1": F.l1_loss}
