"""The default Trainer profiler does nothing, cheaply; a real one is one override away."""

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.profilers import SimpleProfiler

from src.hook_profiler import NoProfiler
from src.run_context import register_resolvers
from tests.conftest import ROOT


def _trainer(tmp_path, *overrides: str):
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"paths.output_dir={tmp_path}", "trainer.accelerator=cpu", *overrides])
    return hydra.utils.instantiate(cfg.trainer, logger=False)


def test_default_trainer_profiles_nothing(tmp_path):
    trainer = _trainer(tmp_path)
    assert type(trainer.profiler) is NoProfiler
    with trainer.profiler.profile("[Callback]X.on_train_batch_end") as action:
        assert action is None
    assert trainer.profiler.summary() == ""


def test_a_profiler_is_one_override_away(tmp_path):
    assert isinstance(_trainer(tmp_path, "trainer.profiler=simple").profiler, SimpleProfiler)
