"""An unknown option of a config group (``degradation=foo``) as one line naming it, before Hydra starts.

Hydra itself answers a missing group option with a multi-line listing of its search path and exits
with status 1; the commands answer every other bad option with one line and status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src import CONF_DIR


def group_options(config_name: str, conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """The config groups a primary config composes (its defaults list) -> the options each offers."""
    primary = OmegaConf.load(conf_dir / f"{config_name}.yaml")
    groups = [next(iter(d)).split("@")[0].lstrip("/") for d in primary.get("defaults", []) if isinstance(d, DictConfig)]
    return {
        g: sorted(p.stem for p in (conf_dir / g).glob("*.yaml") if not p.stem.startswith("_")) for g in groups if "/" not in g
    }


def unknown_choice(config_name: str, overrides: list[str], conf_dir: Path = CONF_DIR) -> str | None:
    """The one-line error for the first ``group=option`` override naming an option the group lacks, if any.

    Only plain values are checked (a comma list of names for sweeps); sweep functions, globs and
    interpolations are left to Hydra.
    """
    if any(a.startswith(("--config-dir", "-cd", "hydra.searchpath")) for a in overrides):
        return None  # options may come from elsewhere: Hydra knows
    options = group_options(config_name, conf_dir)
    for arg in overrides:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or key not in options or any(c in value for c in "()[]{}*$ "):
            continue
        for choice in value.split(","):
            if choice not in ("null", "") and choice not in options[key]:
                return f"{key}={choice}: no conf/{key}/{choice}.yaml; the options: {', '.join(options[key])}"
    return None


def check_group_choices(config_name: str, argv: list[str] | None = None) -> None:
    """Exit with one line and status 2 when the command line names an unknown group option."""
    error = unknown_choice(config_name, sys.argv[1:] if argv is None else argv)
    if error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
