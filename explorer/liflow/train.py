"""Training of the LiFlow Propagator and Corrector (LiFlow §IV.5, supplement Table S1).

Adam (lr 3·10⁻⁴), gradient-norm clipping at 10, batches of 16 composition-balanced pairs,
validation every 1,250 steps on a fixed set of batches, early stopping after ``patience``
evaluations without improvement, and the best weights restored at the end. The losses are
in :mod:`explorer.liflow.losses` (Å²).

Reproducibility: one ``numpy.random.Generator`` draws the training pairs, one
``torch.Generator`` draws priors, noise and flow times. The validation batches *and* their
random draws are regenerated from ``seed + 1`` at every evaluation, so validation losses are
comparable across evaluations. A training state (weights, Adam state, RNG states, history,
best weights) is written at every evaluation with ``torch.save`` — tensors and plain
containers only, read back with ``torch.load(weights_only=True)`` — and ``resume_from``
continues such a run bit-for-bit.

Adaptive prior choices. Until the prior classifier exists, the Li / frame small-or-large
choice of every training material is fixed: ``li_large`` / ``frame_large`` apply to all
materials, ``prior_choices`` overrides them per source name or reduced composition.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from explorer.checkpoints import CHECKPOINT_DIR, save_checkpoint, sha256_of
from explorer.device import resolve_device
from explorer.errors import AnalysisError
from explorer.liflow.data import (
    PairBatch,
    PairIndex,
    PairSource,
    collate,
    load_sources,
    split_pairs,
)
from explorer.liflow.losses import (
    FlowExample,
    corrector_example,
    flow_matching_loss,
    propagator_example,
)
from explorer.liflow.model import FlowModel, FlowModelConfig
from explorer.liflow.prior import PriorConfig
from explorer.nn.compiled import maybe_compile

__all__ = ["TrainConfig", "TrainResult", "corrector_noise_fields", "make_example", "train"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# How a run executes, not what it learns: free to change when resuming or reusing.
EXECUTION_SETTINGS = ("device", "compile", "max_wall_s")


def corrector_noise_fields(noise_A: float) -> dict[str, Any]:
    """:class:`TrainConfig` fields of a Corrector trained on noise up to ``noise_A`` Å:
    ``noise_max_A`` and the prior that records it in the card (the two must agree)."""
    return {"noise_max_A": noise_A, "prior": PriorConfig(corrector_max_noise=noise_A)}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one LiFlow training run (defaults: LiFlow supplement Table S1).

    Attributes:
        kind: ``"propagator"`` or ``"corrector"``.
        model: the network's hyper-parameters.
        prior: the prior; the Corrector uses ``prior.corrector()``.
        batch_size, lr, grad_clip: pairs per step, Adam learning rate, max gradient norm.
        max_steps: optimizer steps at most (125,000).
        eval_every: steps between validations (1,250).
        patience: evaluations without improvement before stopping (10).
        validation_batches: size of the fixed validation set, in batches.
        validation_fraction: tail of each trajectory held out for validation.
        seed: seeds the model initialisation and all draws.
        noise_max_A: Corrector's maximum noise scale σ_max in Å (σ ~ U(0, σ_max]).
        remove_com: remove the per-structure CoM of prior samples and Corrector noise.
        li_large, frame_large: adaptive-prior choices for every material.
        prior_choices: per-material overrides ``(name or composition, li_large, frame_large)``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: ``"float32"`` or ``"float64"``.
        compile: run the network through ``torch.compile`` (inductor). The PaiNN
            messages are chains of broadcast products over (edges, 3, F) tensors;
            fusing them made a training step 2.3× faster on one CPU core here
            (``bench/liflow_speed.py``), after about a minute of compiling. Falls back
            to eager mode, with a log line, where compiling fails (no C++ compiler).
        max_wall_s: stop at the first evaluation after this many seconds of training
            (resumed time included); ``None``: no limit. For leases of fixed length,
            e.g. a GPU machine: the card records ``stopped_at_time_limit``.
    """

    kind: Literal["propagator", "corrector"] = "propagator"
    model: FlowModelConfig = field(default_factory=FlowModelConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    batch_size: int = 16
    lr: float = 3e-4
    grad_clip: float = 10.0
    max_steps: int = 125_000
    eval_every: int = 1_250
    patience: int = 10
    validation_batches: int = 16
    validation_fraction: float = 0.1
    seed: int = 0
    noise_max_A: float = 0.1
    remove_com: bool = True
    li_large: bool = True
    frame_large: bool = False
    prior_choices: tuple[tuple[str, bool, bool], ...] = ()
    device: str = "auto"
    dtype: str = "float32"
    compile: bool = False
    max_wall_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("propagator", "corrector"):
            raise ValueError(f"kind must be 'propagator' or 'corrector', got {self.kind!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {self.dtype!r}")
        positive = ("batch_size", "max_steps", "eval_every", "patience", "validation_batches")
        if any(getattr(self, k) < 1 for k in positive):
            raise ValueError(f"{', '.join(positive)} must be >= 1")
        if not (self.lr > 0 and self.grad_clip > 0 and self.noise_max_A > 0):
            raise ValueError("lr, grad_clip and noise_max_A must be > 0")
        object.__setattr__(
            self,
            "prior_choices",
            tuple((str(k), bool(a), bool(b)) for k, a, b in self.prior_choices),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``model.elements`` as a list)."""
        d = dataclasses.asdict(self)
        d["model"]["elements"] = list(self.model.elements)
        d["prior_choices"] = [list(c) for c in self.prior_choices]
        return json.loads(json.dumps(d))


@dataclass
class TrainResult:
    """Outcome of :func:`train`; ``history`` rows are (step, mean train loss, val loss) in Å²."""

    model: FlowModel
    best_val_loss: float
    best_step: int
    steps: int
    wall_time_s: float
    history: list[tuple[int, float, float]]
    stopped_early: bool
    stopped_at_time_limit: bool = False
    card_path: Path | None = None
    state_path: Path | None = None


def _choices(config: TrainConfig, src: PairSource) -> tuple[bool, bool]:
    for key, li, frame in config.prior_choices:
        if key in (src.name, src.composition):
            return li, frame
    return config.li_large, config.frame_large


def _draw(
    sources: Sequence[PairSource],
    index: PairIndex,
    config: TrainConfig,
    rng: np.random.Generator,
) -> tuple[PairBatch, torch.Tensor, torch.Tensor]:
    """Composition-balanced pairs (as :func:`sample_batch`) plus per-structure choices (B,)."""
    picks = rng.choice(len(index), size=config.batch_size, p=index.weights)
    pairs = [(int(index.source[p]), int(index.start[p])) for p in picks]
    batch = collate(sources, pairs, _DTYPES[config.dtype])
    chosen = [_choices(config, sources[k]) for k, _ in pairs]
    return batch, torch.tensor([c[0] for c in chosen]), torch.tensor([c[1] for c in chosen])


def make_example(
    draw: tuple[PairBatch, torch.Tensor, torch.Tensor],
    config: TrainConfig,
    generator: torch.Generator,
    device: str,
) -> FlowExample:
    """The Propagator or Corrector regression problem for one drawn batch."""
    batch, li, frame = draw
    batch = batch.to(device)
    if config.kind == "propagator":
        return propagator_example(
            batch, config.prior, generator, li.to(device), frame.to(device), config.remove_com
        )
    return corrector_example(batch, config.prior, generator, config.noise_max_A, config.remove_com)


def _validation_loss(
    model: FlowModel,
    draws: list,
    config: TrainConfig,
    device: str,
    forward: Callable[..., torch.Tensor] | None = None,
) -> float:
    """Mean loss over the fixed validation batches with fixed random draws (seed + 1)."""
    generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    model.eval()
    with torch.no_grad():
        losses = [
            float(flow_matching_loss(model, make_example(d, config, generator, device), forward))
            for d in draws
        ]
    model.train()
    return float(np.mean(losses))


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save_state(path: Path, run: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(run, tmp)
    tmp.replace(path)


def _check_resumable(saved: dict[str, Any], config: TrainConfig) -> None:
    """Every setting but the step budget and how it runs must match the saved run."""
    ignore = ("max_steps", *EXECUTION_SETTINGS)
    now = {k: v for k, v in config.to_dict().items() if k not in ignore}
    before = {k: v for k, v in json.loads(saved["config"]).items() if k not in ignore}
    if now != before:
        diff = sorted(k for k in now if now[k] != before.get(k))
        raise ValueError(f"cannot resume: settings differ from the saved run ({', '.join(diff)})")


def can_resume(state_path: Path, config: TrainConfig) -> bool:
    """Whether the training state at ``state_path`` is a run of ``config`` to continue
    (False for a missing file or a run with other settings, which must start afresh)."""
    if not Path(state_path).exists():
        return False
    saved = torch.load(state_path, map_location="cpu", weights_only=True)
    try:
        _check_resumable(saved, config)
    except ValueError:
        return False
    return True


def _card(
    config: TrainConfig, result: TrainResult, files: Sequence[Path], extra: dict | None
) -> dict[str, Any]:
    d = config.to_dict()
    return {
        "family": "liflow",
        "kind": config.kind,
        # The same keys LiFlowSimulator.from_checkpoint reads.
        "model": d.pop("model"),
        "prior": d.pop("prior"),
        "train_config": d,
        "training_files": [{"name": Path(p).name, "sha256": sha256_of(Path(p))} for p in files],
        "best_val_loss": result.best_val_loss,
        "best_step": result.best_step,
        "steps": result.steps,
        "wall_time_s": result.wall_time_s,
        "stopped_early": result.stopped_early,
        "stopped_at_time_limit": result.stopped_at_time_limit,
        "history": [list(h) for h in result.history],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        **(extra or {}),
    }


def train(
    sources: Sequence[PairSource | str | Path],
    config: TrainConfig,
    *,
    files: Sequence[str | Path] | None = None,
    out_name: str | None = None,
    out_dir: Path | None = None,
    state_path: Path | None = None,
    card_extra: dict[str, Any] | None = None,
    resume_from: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a Propagator or Corrector; returns the model with its best weights restored.

    Args:
        sources: pair sources, or H5MD paths (then also recorded as training files).
        config: the run's settings.
        files: training files to record (name + sha256) in the card.
        out_name: if given, write the checkpoint ``out_name`` (weights under ``config.kind``).
        out_dir: checkpoint directory (default ``sample_data/checkpoints``).
        state_path: training-state file written at every evaluation (default
            ``<out_dir>/<out_name>.state.pt`` when ``out_name`` is given, else none).
        card_extra: extra model-card fields.
        resume_from: a training-state file of an identically configured run to continue.
        progress: show a tqdm bar with ETA.
        log: called with a line after every evaluation.
    """
    paths = [Path(s) for s in sources if isinstance(s, str | Path)]
    if paths and len(paths) != len(sources):
        raise TypeError("sources must be all PairSource objects or all paths")
    srcs = load_sources(paths) if paths else list(sources)  # type: ignore[arg-type]
    files = [Path(f) for f in (files if files is not None else paths)]
    out_dir = Path(out_dir) if out_dir is not None else CHECKPOINT_DIR
    if state_path is None and out_name is not None:
        state_path = out_dir / f"{out_name}.state.pt"
    device = resolve_device(config.device)
    dtype = _DTYPES[config.dtype]

    train_index, val_index = split_pairs(srcs, config.validation_fraction)
    if len(train_index) == 0 or len(val_index) == 0:
        raise AnalysisError("need training and validation pairs; trajectories too short?")
    val_rng = np.random.default_rng(config.seed + 1)
    val_draws = [_draw(srcs, val_index, config, val_rng) for _ in range(config.validation_batches)]

    torch.manual_seed(config.seed)
    model = FlowModel(config.model).to(device=device, dtype=dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    step, history, best_step, bad_evals = 0, [], 0, 0
    best_val, best_weights = float("inf"), _clone_state(model)
    elapsed = 0.0
    if resume_from is not None:
        saved = torch.load(resume_from, map_location=device, weights_only=True)
        _check_resumable(saved, config)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = json.loads(saved["numpy_rng"])
        generator.set_state(saved["torch_rng"].cpu())
        step, best_step, bad_evals = saved["step"], saved["best_step"], saved["bad_evals"]
        best_val, best_weights = saved["best_val"], saved["best_weights"]
        history = [tuple(h) for h in saved["history"]]
        elapsed = saved["wall_time_s"]

    start, window, stopped, out_of_time = time.perf_counter() - elapsed, [], False, False
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, desc=config.kind)
    forward = maybe_compile(model, config.compile, log)
    model.train()
    while step < config.max_steps and not (stopped or out_of_time):
        example = make_example(_draw(srcs, train_index, config, rng), config, generator, device)
        loss = flow_matching_loss(model, example, forward)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        window.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{window[-1]:.4g}", best=f"{best_val:.4g}")
        if step % config.eval_every and step < config.max_steps:
            continue
        val = _validation_loss(model, val_draws, config, device, forward)
        history.append((step, float(np.mean(window)), val))
        window = []
        if val < best_val:
            best_val, best_step, best_weights, bad_evals = val, step, _clone_state(model), 0
        else:
            bad_evals += 1
        stopped = bad_evals >= config.patience
        out_of_time = (
            config.max_wall_s is not None and time.perf_counter() - start > config.max_wall_s
        )
        if log is not None:
            train_mean = history[-1][1]
            log(f"step {step}: train {train_mean:.5g} Å², val {val:.5g} Å² (best {best_val:.5g})")
        if state_path is not None:
            _save_state(
                Path(state_path),
                {
                    "config": json.dumps(config.to_dict()),
                    "model": _clone_state(model),
                    "optimizer": optimizer.state_dict(),
                    "numpy_rng": json.dumps(rng.bit_generator.state),
                    "torch_rng": generator.get_state(),
                    "step": step,
                    "best_step": best_step,
                    "bad_evals": bad_evals,
                    "best_val": best_val,
                    "best_weights": best_weights,
                    "history": [list(h) for h in history],
                    "wall_time_s": time.perf_counter() - start,
                },
            )
    bar.close()
    model.load_state_dict(best_weights)
    result = TrainResult(
        model=model,
        best_val_loss=best_val,
        best_step=best_step,
        steps=step,
        wall_time_s=time.perf_counter() - start,
        history=history,
        stopped_early=stopped,
        stopped_at_time_limit=out_of_time and not stopped,
        state_path=Path(state_path) if state_path is not None else None,
    )
    if out_name is not None:
        card = _card(config, result, files, card_extra)
        result.card_path = save_checkpoint(out_name, {config.kind: model}, card, out_dir)
    return result
