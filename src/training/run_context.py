"""What a training process needs to know about how Hydra and Lightning launched it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from src.inference.checkpoint import resume_checkpoint

# Where config targets live now, for runs saved before they moved: old module prefix -> new one.
MOVED_TARGETS = {
    f"src.{old}.": f"src.{new}."
    for old, new in {
        "sr_module": "training.sr_module", "checkpoint_io": "training.checkpoint_io", "csv_logger": "training.csv_logger",
        "wandb_logger": "training.wandb_logger", "schedules": "training.schedules", "config_checks": "training.config_checks",
        "callbacks": "training.callbacks",
    }.items()
}
REMOVED_TARGETS = {"src.hook_profiler.NoProfiler"}  # a no-op profiler: Lightning's default (null) does the same


def upgrade_targets(cfg: DictConfig) -> DictConfig:
    """A saved run config with its ``_target_``s renamed to where they live now (removed ones become null)."""

    def walk(node):
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str):
                if target in REMOVED_TARGETS:
                    return None
                for old, new in MOVED_TARGETS.items():
                    if target.startswith(old):
                        node["_target_"] = new + target[len(old) :]
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return OmegaConf.create(walk(OmegaConf.to_container(cfg, resolve=False)))


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_dir() -> str | None:
    """The dir of the sweep this job belongs to (``None`` outside a sweep)."""
    return str(Path(HydraConfig.get().runtime.output_dir).parent) if is_multirun() else None


def sweep_label(path: Path) -> str:
    """A sweep's name in W&B (tag and config key): its dir's date and time."""
    return f"sweep_{path.parent.name}_{path.name}"


def sweep_name() -> str | None:
    """This job's sweep label (``None`` outside a sweep)."""
    return None if (path := sweep_dir()) is None else sweep_label(Path(path))


def run_name(default: str) -> str:
    """A job's name in W&B: its dir in the sweep (``0_cnn_small``), else ``default``."""
    return Path(HydraConfig.get().runtime.output_dir).name if is_multirun() else default


def in_ray_job() -> bool:
    """Whether this process is a Ray worker (a job of ``hydra/launcher=ray_gpus``)."""
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def prepare_ddp_launch(output_dir: Path) -> None:
    """Make Lightning's DDP child processes re-run exactly this job, into this job's dir.

    Lightning starts each extra DDP process by re-executing the command line plus
    ``hydra.run.dir=<HydraConfig run.dir>``. Two traps follow: in a sweep the command line holds the
    whole sweep (``-m model=a,b``), so every child would re-run every job; and ``run.dir`` holds a
    ``${now:}`` template that resolves to a new time in the child. So the command line becomes this
    job's own overrides, and ``run.dir`` this job's resolved output dir.
    """
    if not HydraConfig.initialized() or "LOCAL_RANK" in os.environ:
        return  # not under Hydra, or already a DDP child
    hc = HydraConfig.get()
    if is_multirun():
        sys.argv = [sys.argv[0], *hc.overrides.task]
    with read_write(hc), open_dict(hc):
        hc.run.dir = str(output_dir)


def resume_state(run_dir: Path) -> tuple[Path | None, str | None]:
    """(checkpoint to continue from, W&B run id) a run left in ``run_dir``; ``None`` for what it did not leave.

    The checkpoint is ``last.ckpt``, else the newest other one that loads (see ``resume_checkpoint``).
    ``resume=<run dir>`` (a single run) with none is refused; a sweep job without one starts afresh.
    """
    ckpt = resume_checkpoint(run_dir, required=not is_multirun())
    # W&B names its run dirs <offline-run|run>-<date>_<time>-<id>; the newest one is this run's.
    wandb_runs = sorted((run_dir / "wandb").glob("*run-*-*"), key=lambda p: p.name.split("-", 2)[-1])
    wandb_id = wandb_runs[-1].name.rsplit("-", 1)[-1] if wandb_runs else None
    return ckpt, wandb_id


def output_subdir(resume: str | None) -> str:
    """Where Hydra saves a run's config: a resumed run must not overwrite the config it restores."""
    return ".hydra" if resume is None else ".hydra/resumed"


def sqlite_in(directory: str, name: str) -> str:
    """SQLAlchemy URL of ``<directory>/<name>``, creating the directory (the Optuna sweeper opens its
    storage before Hydra creates the sweep dir)."""
    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / name}"


def if_null(value: object, default: object) -> object:
    """``default`` where ``value`` is null (``oc.select`` only replaces missing keys, not null ones)."""
    return default if value is None else value


def train_precision(accelerator: str) -> str:
    """Lightning's precision for training on ``accelerator``: the fastest of bf16-mixed, 16-mixed and 32-true
    within reach of fp32 on that device (src/devices.py: bf16 only where it is native; fp32 elsewhere)."""
    from src.devices import default_precision, select_device

    spec = {"gpu": "cuda", "cuda": "cuda", "mps": "mps", "cpu": "cpu"}.get(str(accelerator), "auto")
    try:
        device = select_device(spec)
    except Exception:  # the Trainer itself says that the accelerator is missing, in its own words
        device = select_device("cpu")
    return {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp32": "32-true"}[default_precision(device)]


def register_resolvers() -> None:
    from src.training.wandb_logger import settings_group

    resolvers = (
        ("sweep_dir", sweep_dir), ("sweep_name", sweep_name), ("run_name", run_name), ("sqlite_in", sqlite_in),
        ("output_subdir", output_subdir), ("if_null", if_null), ("settings_group", lambda *, _root_: settings_group(_root_)),
        ("train_precision", train_precision),
    )  # fmt: skip
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
