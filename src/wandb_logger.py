"""A W&B logger that never prompts or hangs: online only when a key and the server are really there."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def _online_problem(timeout: float) -> str | None:
    """Why W&B cannot log online right now (``None`` if it can): checked in seconds, not minutes."""
    import wandb

    try:  # finds a key in the environment or ~/.netrc without asking for one
        has_key = wandb.login(prompt=False, verify=False)
    except Exception:
        has_key = False
    if not has_key:
        return "no API key (run `wandb login` or set WANDB_API_KEY)"
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError as e:
        return f"{url.hostname} unreachable ({e.strerror or e})"
    try:
        wandb.login(verify=True, prompt=False, relogin=True, timeout=int(timeout) + 5)
    except Exception as e:  # wandb raises several types for a rejected or unverifiable key
        return f"API key rejected ({type(e).__name__})"
    return None


def make_wandb_logger(offline: bool, connect_timeout: float, **kwargs: Any) -> WandbLogger:
    """``WandbLogger`` with ``offline`` honoured; an online request falls back to offline with one line."""
    if not offline and (problem := _online_problem(connect_timeout)):
        log.warning("W&B: %s; logging offline (upload later with `wandb sync`)", problem)
        offline = True
    if offline:
        # Explicit: once wandb.login() has run in this process, the WANDB_MODE that Lightning sets
        # for offline runs is no longer read.
        kwargs["mode"] = "offline"
    return WandbLogger(offline=offline, **kwargs)
