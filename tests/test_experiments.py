"""Every experiment file composes into a training config that passes the training checks."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src import CONF_DIR
from src.training.config_checks import check_train_config
from src.training.run_context import register_resolvers

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
NETS = sorted((p.stem for p in (CONF_DIR / "model").glob("*.yaml") if not p.stem.startswith("_")), key=len)


def model_of(experiment: str) -> list[str]:
    """`pretrained_<net>...` recipes are made for that net (`make pretrained` picks them by name)."""
    nets = [n for n in NETS if experiment.startswith(f"pretrained_{n}")]
    return [f"model={nets[-1]}"] if nets else []


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_experiment_passes_the_training_checks(tmp_path, name):
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=[f"experiment={name}", *model_of(name), f"paths.output_dir={tmp_path / 'run'}"])
    if OmegaConf.is_missing(cfg.data, "root"):  # a folder recipe: the user names the photos
        cfg.data.root = str(tmp_path)
    check_train_config(cfg)  # raises a ConfigError naming the option a recipe got wrong
    if name.startswith("t91"):  # the T91 recipes share one fit-time budget
        assert cfg.trainer.max_time == "00:00:20:00"
