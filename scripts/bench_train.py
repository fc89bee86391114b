"""Training patches/s: a bare PyTorch loop vs srlab's real path (SRModule + SRDataModule + Trainer), side by side.

    .venv/bin/python scripts/bench_train.py                                   # the zoo's 7 nets, bf16-mixed and 32-true, CPU
    .venv/bin/python scripts/bench_train.py --models cnn_deep --precision 32-true --repeats 5
    .venv/bin/python scripts/bench_train.py --quick                           # seconds: checks that it runs
    .venv/bin/python scripts/bench_train.py --device cuda --store STORE --on-device   # GPU, GPU-resident crops
    .venv/bin/python scripts/bench_train.py --models cnn_small --override trainer.enable_progress_bar=false

(a) bare: the same net (built from the same config), batch, patch size, Adam, threads and precision;
    uint8 HR batches already in memory (on the device), degraded on the device with the same
    ``src.degrade`` calls as ``SRModule.degrade``; forward+loss under autocast as Lightning does.
(b) srlab: conf/train.yaml composed with hydra.compose and instantiated like src/training/fit.py (default
    callbacks, CSV logger in a temp dir, default progress bar), validation off for the timed part.

Each repeat runs (a) then (b) (order alternating between repeats), each for ``--warmup`` untimed steps
and ``--steps`` timed ones; a large fp32 and bf16 matmul is timed in the same round as the ceiling.
GFLOP/s = 6 x exact MACs per patch (torch's flop counter) x patches/s (forward 1x, backward 2x, 2 FLOP per MAC).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import hydra
import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from bench_common import (
    ROOT,
    add_harness_args,
    autocast,
    compose_train,
    forward_macs,
    head,
    interleave,
    matmul_gflops,
    median,
    print_rows,
    ratios,
    seconds,
    set_threads,
    sync,
)
from omegaconf import DictConfig, OmegaConf, open_dict

from src.arch import contract
from src.data.patches import PatchBatches
from src.degrade import downscale, to_float, upsample
from src.metrics import to_y

# Wall clock by default. ``--clock cpu`` uses process CPU time instead: with ``--threads 1`` it counts the
# work done and not the time other processes held the cores, so A/B ratios hold on a crowded machine.
CLOCK = time.perf_counter
PRECISIONS = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}  # Lightning's name -> the matmul ceiling's dtype
PHASES = {"start": "next batch", "backward": "forward", "optimizer": "backward", "end": "optimizer"}
TABLE_NOTE = (
    "srlab/bare: median of per-repeat ratios (min..max over repeats); floor: FloorModule; static: srlab fed in-memory "
    "batches; ceiling: median torch.matmul {n}^3 timed between repeats; {mode}; {clock} clock"
)
PHASE_NOTE = (
    "us per step, median over timed steps, then over repeats; next batch: end of a step -> start of the next "
    "(Lightning's bookkeeping, loading the batch, batch-start hooks); optimizer: the step, zero_grad, LR "
    "schedule and batch-end hooks; sum: of the medians (periodic work such as checkpoint writes is in p/s only)"
)


@dataclass
class Result:
    """One net and precision: patches/s per repeat of each side timed (bare, srlab, then --floor's and
    --static-data's), the matmul ceilings timed between repeats, and --phases' per-repeat medians per side."""

    rates: dict[str, list[float]]
    ceilings: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PRECISIONS})
    phases: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    macs_per_patch: int = 0


class StepClock(pl.Callback):
    """Clock from the end of step ``warmup`` to the end of step ``warmup + steps``: data loading, hooks,
    logging and progress bar of those steps included; one device sync at each end only.

    ``phases=True`` (CPU only: no syncs are added) also stamps each timed step's hooks, for ``--phases``;
    as the last callback its stamps come after every other callback's hook of the same name.
    """

    def __init__(self, warmup: int, steps: int, phases: bool = False) -> None:
        self.warmup, self.steps = warmup, steps
        self.n = 0
        self.t0 = self.t1 = 0.0
        self.stamps: list[tuple[str, float]] | None = [] if phases else None

    def _stamp(self, hook: str) -> None:
        if self.stamps is not None and self.warmup <= self.n <= self.warmup + self.steps:
            self.stamps.append((hook, CLOCK()))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self._stamp("start")

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss) -> None:
        self._stamp("backward")

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stamp("optimizer")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        self._stamp("end")
        self.n += 1
        if self.n in (self.warmup, self.warmup + self.steps):
            sync(pl_module.device)
            if self.n == self.warmup:
                self.t0 = CLOCK()
            else:
                self.t1 = CLOCK()

    def phase_medians(self) -> dict[str, float]:
        """Median us per step of each phase, named by where it ends: ``start`` is end of the previous step ->
        start of this one (Lightning's bookkeeping, the next batch, batch-start hooks), ``backward`` the
        forward (training_step), ``optimizer`` the backward, ``end`` the optimizer step and batch-end hooks."""
        spans: dict[str, list[float]] = {name: [] for name in PHASES}
        for (_, t0), (name, t1) in itertools.pairwise(self.stamps or []):
            spans[name].append((t1 - t0) * 1e6)
        return {name: median(v) for name, v in spans.items()}


def overrides_for(args: argparse.Namespace, model: str, precision: str, steps_total: int, out_dir: str) -> list[str]:
    ov = [
        f"model={model}",
        f"trainer.precision={precision}",
        f"data.patch_size={args.patch}",
        f"data.batch_size={args.batch}",
        "logger=csv",
        f"paths.output_dir={out_dir}",
        "++trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        f"++trainer.max_steps={steps_total}",
        "trainer.max_epochs=1",
        "test=false",
    ]
    if args.device == "cuda":
        ov.append("trainer=gpu")  # the GPU trainer config (cudnn.benchmark on), as a GPU user would pick
    else:
        ov.append("trainer.accelerator=cpu")
    if args.store:
        ov += ["data=store", f"data.path={args.store}", f"data.on_device={str(args.on_device).lower()}"]
    if args.compile:
        ov.append("model.compile=true")
    return ov + list(args.override)


def cover_steps(datamodule, steps_total: int) -> None:
    # One epoch must hold every step so no epoch boundary (checkpoint write, LR monitor) falls inside the
    # timed span: raise patches_per_image until it does. The cost of a step does not depend on it.
    n_images = len(datamodule.images["train"])
    need = math.ceil(steps_total * datamodule.batch_size / n_images) + 1
    datamodule.patches_per_image = max(datamodule.patches_per_image, need)


def build_srlab(cfg):
    """Model, datamodule, callbacks and loggers, instantiated the way src/training/fit.py does it."""
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(
        cfg.model,
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=hydra.utils.instantiate(cfg.scheduler) if cfg.scheduler else None,
    )
    return datamodule, model


def run_srlab(
    cfg, datamodule, model, warmup: int, steps: int, batches: list[torch.Tensor] | None = None, phases: list | None = None
) -> float:
    """One ``trainer.fit`` of ``warmup + steps`` steps with the config's callbacks and loggers; timed patches/s.

    ``batches``: feed these (cycled) instead of the DataModule's crops: srlab's path less its data path.
    ``phases``: append this run's per-phase medians (``StepClock.phase_medians``) to it.
    """
    clock = StepClock(warmup, steps, phases=phases is not None)
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()] + [clock]
    loggers = [hydra.utils.instantiate(c) for c in cfg.logger.values()]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if batches is None:
        trainer.fit(model, datamodule=datamodule)
    else:  # the same DataModule (callbacks read its val images), its train loader swapped for this run
        fed = [batches[k % len(batches)] for k in range(warmup + steps)]
        datamodule.train_dataloader = lambda: torch.utils.data.DataLoader(fed, batch_size=None)
        try:
            trainer.fit(model, datamodule=datamodule)
        finally:
            del datamodule.train_dataloader  # back to the class's method
    if clock.t1 <= clock.t0:
        raise RuntimeError(f"srlab run stopped after {clock.n} steps, before the timed span ended")
    if phases is not None:
        phases.append(clock.phase_medians())
    return steps * cfg.data.batch_size / (clock.t1 - clock.t0)


class BareLoop:
    """The reference: the same work as SRModule.training_step, with nothing around it."""

    def __init__(self, cfg, datamodule, device: torch.device, precision: str, n_batches: int, compile_net: bool) -> None:
        self.device, self.precision = device, precision
        self.scale = int(cfg.data.scale)
        self.net = contract.build_net(OmegaConf.to_container(cfg.model.net, resolve=True), self.scale).to(device)
        self.channels_last = bool(cfg.model.channels_last)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if compile_net:
            self.net.compile()
        self.opt = hydra.utils.instantiate(cfg.optimizer)(params=self.net.parameters())
        # The same crops the DataModule would deliver, cut once and kept on the device.
        train = datamodule.images["train"]
        per_image = math.ceil(n_batches * int(cfg.data.batch_size) / len(train))  # one epoch holds the n batches
        ds = PatchBatches(train, int(cfg.data.patch_size), per_image, int(cfg.data.batch_size), int(cfg.seed))
        self.batches = [ds[k].to(device) for k in range(n_batches)]
        self.k = 0

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """SRModule.training_step's work on one uint8 batch, under whatever autocast the caller set."""
        # Written out, not through SRPipeline: the baseline is the bare torch calls, no srlab module between them.
        net, mode = self.net, contract.upsample_mode(self.net)
        with torch.autocast(batch.device.type, enabled=False):  # degradation in fp32, as SRModule.degrade
            hr = to_float(batch)
            lr = downscale(hr, self.scale)
            x = lr if mode is None else upsample(lr, self.scale, mode)
        if contract.in_channels(net) == 1:
            x = to_y(x) / 255
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        o = contract.offset(net) * contract.net_factor(net, self.scale)
        target = hr[..., o : hr.shape[-2] - o, o : hr.shape[-1] - o] if o else hr
        return F.mse_loss(net(x).float(), target)

    def step(self) -> None:
        batch = self.batches[self.k % len(self.batches)]
        self.k += 1
        with autocast(self.device, self.precision):
            loss = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def run(self, warmup: int, steps: int, batch: int) -> float:
        """Patches/s of ``steps`` steps after ``warmup`` untimed ones."""
        return steps * batch / seconds(self.step, self.device, steps, warmup=warmup, clock=CLOCK)


class FloorModule(pl.LightningModule):
    """Lightning's own floor: the bare loop's step as a training_step, over the bare loop's in-memory
    batches, with no callbacks, logger, checkpoint, progress bar or LR schedule. What this loses to the
    bare loop is Lightning's per-step cost alone; srlab's path cannot be faster than this."""

    def __init__(self, bare: BareLoop) -> None:
        super().__init__()
        self.bare = bare
        self.net = bare.net

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.bare.loss(batch)  # Lightning's precision plugin sets the autocast

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.bare.opt


def run_floor(
    bare: BareLoop, precision: str, device: torch.device, warmup: int, steps: int, batch: int, phases: list | None = None
) -> float:
    clock = StepClock(warmup, steps, phases=phases is not None)
    trainer = pl.Trainer(
        accelerator=device.type, devices=1, precision=precision, max_steps=warmup + steps, logger=False, callbacks=[clock],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    batches = [bare.batches[k % len(bare.batches)] for k in range(warmup + steps)]
    trainer.fit(FloorModule(bare), train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    if phases is not None:
        phases.append(clock.phase_medians())
    return steps * batch / (clock.t1 - clock.t0)


def choose_steps(bare: BareLoop, seconds_per_side: float, min_steps: int) -> int:
    """Timed steps per repeat so each side runs about ``seconds_per_side``: nets differ 200x in cost per step."""
    per_step = seconds(bare.step, bare.device, 3, warmup=2) / 3
    return max(min_steps, round(seconds_per_side / per_step))


@dataclass
class Sides:
    """What one net and precision is timed with: srlab's config, DataModule and module, the bare loop, the step count."""

    cfg: DictConfig
    datamodule: pl.LightningDataModule
    module: pl.LightningModule
    bare: BareLoop
    steps: int


def build_sides(args: argparse.Namespace, model: str, precision: str) -> Sides:
    """Both sides from one composed config; the timed step count (``--steps`` or about ``--seconds``) set in it."""
    out_dir = tempfile.mkdtemp(prefix=f"bench_train_{model}_")
    cfg = compose_train(overrides_for(args, model, precision, 1, out_dir))
    datamodule, module = build_srlab(cfg)
    datamodule.setup("fit")
    bare = BareLoop(cfg, datamodule, torch.device(args.device), precision, n_batches=8, compile_net=args.compile)
    steps = args.steps or choose_steps(bare, args.seconds, min_steps=5)
    with open_dict(cfg):
        cfg.trainer.max_steps = args.warmup + steps
    cover_steps(datamodule, args.warmup + steps)
    return Sides(cfg, datamodule, module, bare, steps)


def timed_sides(args: argparse.Namespace, s: Sides, precision: str, res: Result) -> dict[str, Callable[[], float]]:
    """Each side as a call that returns one repeat's patches/s: bare and srlab, plus --floor's and --static-data's."""
    w, n = args.warmup, s.steps

    def phases(side: str) -> list | None:
        return res.phases.setdefault(side, []) if args.phases else None

    sides = {
        "bare": lambda: s.bare.run(w, n, args.batch),
        "srlab": lambda: run_srlab(s.cfg, s.datamodule, s.module, w, n, phases=phases("srlab")),
    }
    if args.floor:
        sides["floor"] = lambda: run_floor(s.bare, precision, torch.device(args.device), w, n, args.batch, phases("floor"))
    if args.static_data:
        sides["static"] = lambda: run_srlab(s.cfg, s.datamodule, s.module, w, n, s.bare.batches, phases("static"))
    return sides


def repeat_line(r: int, rates: dict[str, list[float]], ceilings: dict[str, list[float]]) -> str:
    """One repeat's patches/s per side, srlab/bare and the matmul ceilings, as the run goes."""
    sides = "".join(f"{side} {rates[side][-1]:8.1f} " for side in ("srlab", "floor", "static") if side in rates)
    return (
        f"  repeat {r + 1}: bare {rates['bare'][-1]:8.1f}  {sides}patches/s  ratio {rates['srlab'][-1] / rates['bare'][-1]:.3f}  "
        f"matmul fp32 {ceilings['32-true'][-1]:.0f} bf16 {ceilings['bf16-mixed'][-1]:.0f} GFLOP/s"
    )


def bench_model(args: argparse.Namespace, model: str, precision: str) -> Result:
    """Bare and srlab (and --floor, --static-data) interleaved over ``--repeats``, a matmul ceiling after each repeat."""
    s = build_sides(args, model, precision)
    side = args.patch // contract.net_factor(s.bare.net, s.bare.scale)  # what the net reads of one patch
    res = Result(rates={}, macs_per_patch=forward_macs(s.bare.net, contract.in_channels(s.bare.net), side, side))
    print(f"\n{model} {precision}: {s.steps} timed steps x {args.repeats} repeats (+{args.warmup} warm-up each)", flush=True)

    def after(r: int, rates: dict[str, list[float]]) -> None:
        for name, dtype in PRECISIONS.items():
            res.ceilings[name].append(matmul_gflops(torch.device(args.device), dtype, n=args.matmul_n, clock=CLOCK))
        print(repeat_line(r, rates, res.ceilings), flush=True)

    res.rates = interleave(timed_sides(args, s, precision, res), args.repeats, after)
    return res


def table_row(model: str, precision: str, res: Result) -> dict[str, object]:
    """Medians of one net and precision: patches/s, srlab/bare, GFLOP/s and the share of the matmul ceiling."""
    rates, ceiling, gf = res.rates, median(res.ceilings[precision]), 6 * res.macs_per_patch / 1e9
    bare, srlab, srlab_bare = median(rates["bare"]), median(rates["srlab"]), ratios(rates["srlab"], rates["bare"])
    row: dict[str, object] = {
        "model": model,
        "precision": precision,
        "bare p/s": f"{bare:.1f}",
        "srlab p/s": f"{srlab:.1f}",
        "srlab/bare": f"{median(srlab_bare):.3f}",
        "min..max": f"{min(srlab_bare):.2f}..{max(srlab_bare):.2f}",
        "GFLOP/s bare": f"{gf * bare:.1f}",
        "GFLOP/s srlab": f"{gf * srlab:.1f}",
        "matmul GF/s": f"{ceiling:.0f}",
        "srlab/ceil": f"{gf * srlab / ceiling:.2f}",
        "bare/ceil": f"{gf * bare / ceiling:.2f}",
    }
    for side in ("floor", "static"):
        if side in rates:
            row[f"{side}/bare"] = f"{median(ratios(rates[side], rates['bare'])):.3f}"
    return row


def phase_rows(model: str, precision: str, res: Result) -> list[dict[str, object]]:
    """--phases: median us per step of each phase per side (medians over timed steps, then over repeats)."""
    return [
        {"model": model, "precision": precision, "side": side}
        | {label: f"{median([m[name] for m in per_repeat]):.0f}" for name, label in PHASES.items()}
        | {"sum": f"{median([sum(m.values()) for m in per_repeat]):.0f}"}
        for side, per_repeat in res.phases.items()
    ]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_harness_args(ap)
    ap.add_argument("--precision", nargs="+", default=["bf16-mixed", "32-true"], choices=["bf16-mixed", "32-true"])
    ap.add_argument("--patch", type=int, default=48, help="HR patch side (data.patch_size)")
    ap.add_argument("--batch", type=int, default=16, help="patches per step (data.batch_size)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before each timed span")
    ap.add_argument("--steps", type=int, default=0, help="timed steps per repeat (0: about --seconds per side)")
    ap.add_argument("--seconds", type=float, default=8.0, help="target length of each timed span when --steps=0")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="cpu: process CPU time (use with --threads 1 on a shared machine: immune to other processes)",
    )
    ap.add_argument("--compile", action="store_true", help="torch.compile the net on both sides (model.compile=true)")
    ap.add_argument("--store", help="train from this store (data=store) instead of the sample photos")
    ap.add_argument("--on-device", action="store_true", help="with --store: data.on_device=true (crops cut on the device)")
    ap.add_argument("--matmul-n", type=int, default=2048, help="side of the square matmul timed as the ceiling")
    ap.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for the srlab side (diagnosis)")
    ap.add_argument("--floor", action="store_true", help="also time Lightning's floor: the bare step in a bare LightningModule")
    ap.add_argument(
        "--static-data",
        action="store_true",
        help="also time srlab's path fed the bare loop's in-memory batches: what its data path costs (diagnosis)",
    )
    ap.add_argument(
        "--phases",
        action="store_true",
        help="also print median us per step of each phase (next batch, forward, backward, optimizer) per side, CPU only",
    )
    ap.add_argument("--quick", action="store_true", help="tiny run (2 steps, 1 repeat, patch 24, batch 4): checks it works")
    return ap


def configure(args: argparse.Namespace, ap: argparse.ArgumentParser) -> None:
    """--quick's sizes, threads and clock; refuses the combinations that would measure the wrong thing."""
    global CLOCK
    if args.quick:
        args.steps, args.repeats, args.warmup, args.patch, args.batch, args.matmul_n = 2, 1, 1, 24, 4, 512
    set_threads(args.threads)
    if args.phases and args.device != "cpu":
        ap.error("--phases stamps hooks without device syncs: CPU only")
    if args.clock == "cpu":
        if torch.get_num_threads() != 1 or args.device != "cpu":
            ap.error("--clock cpu needs --threads 1 on CPU (more threads spin while waiting, and count)")
        CLOCK = time.process_time
    # Library notices that would bury the table: missing monitored metric (validation is off on purpose), etc.
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    os.chdir(ROOT)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"


def main() -> None:
    ap = build_parser()
    args = ap.parse_args()
    configure(args, ap)
    settings = f"threads {torch.get_num_threads()}", f"patch {args.patch}", f"batch {args.batch}"
    print(head(device_name(torch.device(args.device)), *settings))
    rows, phases = [], []
    for precision in args.precision:
        for model in args.models:
            res = bench_model(args, model, precision)
            rows.append(table_row(model, precision, res))
            phases += phase_rows(model, precision, res)
    note = TABLE_NOTE.format(n=args.matmul_n, mode="compiled" if args.compile else "eager", clock=args.clock)
    print_rows(rows, args.json, note)
    if phases:
        print_rows(phases, None, PHASE_NOTE)


if __name__ == "__main__":
    main()
