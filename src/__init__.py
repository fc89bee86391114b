"""srlab: single-image super-resolution experiments (nets, data, training, inference, report)."""

from pathlib import Path

# The config tree every entry point composes from (a folder of the repo, not a package).
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
