"""Training of a FlashMD model for one stride (FlashMD App B.1–B.2).

* Loss (eq. 6): per structure, the mean over atoms and components of the squared errors of
  the standardised mass-scaled momentum p̃' / s_p and displacement Δq̃ / s_q, summed over
  the two terms and averaged over the batch (s_q, s_p: target RMS of the training set).
  With the free-flight baseline the same loss applies to the residuals (model docstring).
* Adam, learning rate 3·10⁻⁴, multiplied by ``lr_decay`` every ``decay_every`` steps (the
  paper decays every 50–100 epochs).
* Model selection (App B.2): after every ``eval_every`` steps the validation set is
  predicted with the *constrained* inference step, and the weights with the lowest product
  RMSE(p̃') · RMSE(Δq̃) · RMSE(E) are kept, E = V(q') + K(p') from the energy model (the
  reference calculator) against the energy of the reference target state. Only
  ``energy_structures`` validation structures get the energy term, to keep it cheap.
  Training stops after ``patience`` evaluations without improvement.
* Seeded (model init, batch draws); resumable: a state file (safetensors tensors + a JSON
  sidecar, nothing pickled) is written at every evaluation and ``resume_from`` continues it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from explorer.checkpoints import CHECKPOINT_DIR, save_checkpoint, sha256_of
from explorer.device import resolve_device
from explorer.errors import AnalysisError, ResumeError
from explorer.flashmd.data import StatePair, collate, load_pairs, target_scales
from explorer.flashmd.energy import EnergyModel
from explorer.flashmd.model import FlashMDConfig, FlashMDModel

__all__ = ["TrainConfig", "TrainResult", "evaluate_pairs", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one FlashMD training run.

    Attributes:
        model: network hyper-parameters (``model.stride_fs`` is Δτ of the data pairs).
        energy_model: name for :class:`~explorer.flashmd.energy.EnergyModel`.
        batch_size: structures per optimiser step.
        lr, lr_decay, decay_every: Adam learning rate, step-decay factor and period (steps).
        max_steps, eval_every, patience: step budget, steps between validations, and
            validations without improvement before stopping.
        energy_structures: validation structures that get the energy term.
        time_reversal: add time-reversed pairs (App B.3).
        seed: seeds initialisation and batch draws.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        max_wall_s: stop at the first validation after this many seconds of training
            (resumed time included); ``None``: no limit. Like ``device``, how a run
            executes, not what it learns: both may change when resuming.
    """

    model: FlashMDConfig = field(default_factory=FlashMDConfig)
    energy_model: str = "argon"
    batch_size: int = 4
    lr: float = 3e-4
    lr_decay: float = 0.5
    decay_every: int = 1000
    max_steps: int = 2000
    eval_every: int = 100
    patience: int = 10
    energy_structures: int = 16
    time_reversal: bool = True
    seed: int = 0
    device: str = "cpu"
    max_wall_s: float | None = None

    def __post_init__(self) -> None:
        positive = ("batch_size", "decay_every", "max_steps", "eval_every", "patience")
        if any(getattr(self, k) < 1 for k in positive):
            raise ValueError(f"{', '.join(positive)} must be >= 1")
        if not (self.lr > 0 and 0 < self.lr_decay <= 1) or self.energy_structures < 0:
            raise ValueError("need lr > 0, 0 < lr_decay <= 1 and energy_structures >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d


@dataclass
class TrainResult:
    """Outcome of :func:`train`; ``history`` rows are (step, train loss, val metrics dict)."""

    model: FlashMDModel
    best_metrics: dict[str, float]
    best_step: int
    steps: int
    wall_time_s: float
    history: list[dict[str, Any]]
    stopped_early: bool
    stopped_at_time_limit: bool = False
    card_path: Path | None = None


# How a run executes, not what it learns: free to change when resuming (as the budget is).
EXECUTION_SETTINGS = ("device", "max_wall_s")


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def pair_loss(model: FlashMDModel, pairs: Sequence[StatePair]) -> torch.Tensor:
    """Eq. 6 on standardised targets, averaged over the structures of ``pairs``."""
    dtype, device = next(model.parameters()).dtype, _device_of(model)
    b = collate(pairs, dtype, device)
    graph = model.build_graph(b.positions, b.cell, b.batch, b.pbc)
    y_q, y_p = model(b.numbers, b.positions, b.momenta, b.masses, b.cell, graph)
    t_q, t_p = model.standardise_targets(*b.targets(), b.momenta, b.masses)
    err = ((y_q - t_q) ** 2 + (y_p - t_p) ** 2).sum(-1)
    per_structure = torch.zeros(b.num_structures, dtype=dtype, device=device)
    per_structure = per_structure.index_add_(0, b.batch, err)
    counts = torch.bincount(b.batch, minlength=b.num_structures).to(dtype)
    return (per_structure / (3 * counts)).mean()


@torch.no_grad()
def evaluate_pairs(
    model: FlashMDModel,
    pairs: Sequence[StatePair],
    energy: EnergyModel | None = None,
    energy_structures: int | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """Errors of the constrained prediction on ``pairs``.

    Returns RMSE of Δq̃ (√amu·Å) and p̃' (√amu·Å/fs), RMSE(q) in Å and RMSE(v) in Å/fs
    (App H, Table 3), and with an energy model RMSE(E) per structure in eV and meV/atom
    over the first ``energy_structures`` pairs (all when None), plus the selection score
    RMSE(Δq̃)·RMSE(p̃')·RMSE(E) (App B.2).
    """
    model.eval()
    dtype, device = next(model.parameters()).dtype, _device_of(model)
    sq = {"dq_tilde": 0.0, "p_tilde": 0.0, "q": 0.0, "v": 0.0}
    n_values = 0
    predicted = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        b = collate(chunk, dtype, device)
        q_new, p_new = model.step(
            b.numbers, b.positions, b.momenta, b.masses, b.cell, b.batch, b.pbc
        )
        sqrt_m = torch.sqrt(b.masses).unsqueeze(-1)
        dq_ref, pt_ref = b.targets()
        sq["dq_tilde"] += float((((q_new - b.positions) * sqrt_m - dq_ref) ** 2).sum())
        sq["p_tilde"] += float(((p_new / sqrt_m - pt_ref) ** 2).sum())
        sq["q"] += float(((q_new - b.next_positions) ** 2).sum())
        sq["v"] += float((((p_new - b.next_momenta) / b.masses.unsqueeze(-1)) ** 2).sum())
        n_values += b.positions.numel()
        sizes = torch.bincount(b.batch).tolist()
        predicted += list(
            zip(
                torch.split(q_new.double().cpu(), sizes),
                torch.split(p_new.double().cpu(), sizes),
                strict=True,
            )
        )
    metrics = {f"rmse_{k}": math.sqrt(v / n_values) for k, v in sq.items()}
    if energy is not None:
        count = len(pairs) if energy_structures is None else min(energy_structures, len(pairs))
        errors = []
        for pair, (q_new, p_new) in list(zip(pairs, predicted, strict=True))[:count]:
            args = (pair.masses, pair.cell, pair.pbc)
            e_pred = energy.total(pair.numbers, q_new.numpy(), p_new.numpy(), *args)
            e_ref = energy.total(pair.numbers, pair.next_positions, pair.next_momenta, *args)
            errors.append((e_pred - e_ref, len(pair.numbers)))
        if errors:
            de = np.array([e for e, _ in errors])
            n_atoms = np.array([n for _, n in errors])
            metrics["rmse_energy_eV"] = float(np.sqrt(np.mean(de**2)))
            metrics["rmse_energy_meV_per_atom"] = float(np.sqrt(np.mean((de / n_atoms) ** 2)) * 1e3)
            metrics["mean_energy_error_eV"] = float(de.mean())
    metrics["score"] = metrics["rmse_dq_tilde"] * metrics["rmse_p_tilde"]
    metrics["score"] *= metrics.get("rmse_energy_eV", 1.0)
    model.train()
    return metrics


def train(
    train_files: Sequence[str | Path],
    val_files: Sequence[str | Path],
    config: TrainConfig,
    *,
    out_name: str | None = None,
    out_dir: Path | None = None,
    card_extra: dict[str, Any] | None = None,
    resume_from: Path | None = None,
    state_path: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train on pairs from ``train_files``, select on ``val_files`` (separate trajectories).

    Args:
        train_files, val_files: NVE H5MD trajectories with momenta.
        config: run settings.
        out_name: write checkpoint ``out_name`` (weights module ``flashmd``) to ``out_dir``
            (default ``sample_data/checkpoints``).
        card_extra: extra model-card fields (e.g. the command line).
        resume_from: a state file of an identically configured run.
        state_path: stem of the state files ``<stem>.safetensors`` + ``<stem>.json``
            (default ``<out_dir>/training_state/<out_name>``).
        progress: tqdm bar with ETA; ``log`` gets one line per validation.
    """
    stride = config.model.stride_fs
    train_pairs = load_pairs(train_files, stride, config.time_reversal)
    val_pairs = load_pairs(val_files, stride, time_reversal=False)
    if not train_pairs or not val_pairs:
        raise AnalysisError("need training and validation pairs")
    out_dir = Path(out_dir) if out_dir is not None else CHECKPOINT_DIR
    if state_path is None and out_name is not None:
        # A subdirectory: list_checkpoints() reads every *.json next to the weights.
        state_path = out_dir / "training_state" / out_name
    energy = EnergyModel(config.energy_model) if config.energy_structures else None

    torch.manual_seed(config.seed)
    model = FlashMDModel(config.model)
    free_flight = stride if config.model.free_flight_baseline else None
    model.set_scales(*target_scales(train_pairs, free_flight))
    model.to(resolve_device(config.device))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.decay_every, config.lr_decay)
    rng = np.random.default_rng(config.seed)
    step, best_step, bad, elapsed = 0, 0, 0, 0.0
    best = {"score": math.inf}
    best_weights = _clone(model)
    history: list[dict[str, Any]] = []
    if resume_from is not None:
        step, best_step, bad, elapsed, best, history = _load_state(
            Path(resume_from), config, model, optimizer, scheduler, rng
        )
        best_weights = _load_best(Path(resume_from))

    start = time.perf_counter() - elapsed
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, desc="FlashMD")
    window: list[float] = []
    stopped = out_of_time = False
    model.train()
    while step < config.max_steps and not (stopped or out_of_time):
        picks = rng.choice(len(train_pairs), size=config.batch_size, replace=False)
        loss = pair_loss(model, [train_pairs[i] for i in picks])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        window.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{window[-1]:.4g}", best=f"{best['score']:.3g}")
        if step % config.eval_every and step < config.max_steps:
            continue
        metrics = evaluate_pairs(model, val_pairs, energy, config.energy_structures)
        history.append({"step": step, "train_loss": float(np.mean(window)), **metrics})
        window = []
        if metrics["score"] < best["score"]:
            best, best_step, best_weights, bad = metrics, step, _clone(model), 0
        else:
            bad += 1
        stopped = bad >= config.patience
        limit = config.max_wall_s
        out_of_time = limit is not None and time.perf_counter() - start > limit
        if log is not None:
            log(
                f"step {step}: loss {history[-1]['train_loss']:.4g}, val RMSE q "
                f"{metrics['rmse_q']:.3g} Å, v {metrics['rmse_v']:.3g} Å/fs, E "
                f"{metrics.get('rmse_energy_meV_per_atom', float('nan')):.3g} meV/atom"
            )
        if state_path is not None:
            _save_state(
                Path(state_path), config, model, optimizer, scheduler, rng, best_weights,
                {"step": step, "best_step": best_step, "bad": bad, "best": best,
                 "history": history, "wall_time_s": time.perf_counter() - start},
            )  # fmt: skip
    bar.close()
    model.load_state_dict(best_weights)
    model.cpu().eval()  # checkpoints and callers get CPU weights, whatever trained them
    result = TrainResult(
        model=model,
        best_metrics=best,
        best_step=best_step,
        steps=step,
        wall_time_s=time.perf_counter() - start,
        history=history,
        stopped_early=stopped,
        stopped_at_time_limit=out_of_time and not stopped,
    )
    if out_name is not None:
        card = _card(config, result, [Path(f) for f in train_files], [Path(f) for f in val_files])
        card.update(card_extra or {})
        result.card_path = save_checkpoint(out_name, {"flashmd": model}, card, out_dir)
    return result


def _clone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _card(
    config: TrainConfig, result: TrainResult, train_files: list[Path], val_files: list[Path]
) -> dict[str, Any]:
    def files(paths: list[Path]) -> list[dict[str, str]]:
        return [{"name": p.name, "sha256": sha256_of(p)} for p in paths]

    d = config.to_dict()
    return {
        "family": "flashmd",
        "model": d.pop("model"),
        "stride_fs": config.model.stride_fs,
        "energy_model": config.energy_model,
        "elements": list(config.model.elements),
        "target_scales": {
            "dq_tilde_sqrt_amu_A": float(result.model.q_scale),
            "p_tilde_sqrt_amu_A_per_fs": float(result.model.p_scale),
        },
        "train_config": d,
        "training_files": files(train_files),
        "validation_files": files(val_files),
        "validation_metrics": result.best_metrics,
        "best_step": result.best_step,
        "steps": result.steps,
        "wall_time_s": result.wall_time_s,
        "stopped_early": result.stopped_early,
        "stopped_at_time_limit": result.stopped_at_time_limit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }


# -- resumable state: tensors in safetensors, the rest in JSON (nothing unpickled) --------
def _save_state(
    path: Path,
    config: TrainConfig,
    model: FlashMDModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng: np.random.Generator,
    best_weights: dict[str, torch.Tensor],
    counters: dict[str, Any],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.cpu().contiguous() for k, v in best_weights.items()})
    opt = optimizer.state_dict()
    for index, slots in opt["state"].items():
        for key, value in slots.items():
            tensors[f"opt.{index}.{key}"] = torch.as_tensor(value).cpu().contiguous()
    meta = {
        "config": config.to_dict(),
        "param_groups": opt["param_groups"],
        "scheduler": scheduler.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        **counters,
    }
    tensor_path, meta_path = _state_files(path)
    tmp = tensor_path.with_name(tensor_path.name + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(tensor_path)
    meta_path.write_text(json.dumps(meta, default=float))


def _state_files(stem: Path) -> tuple[Path, Path]:
    return Path(f"{stem}.safetensors"), Path(f"{stem}.json")


def _load_state(
    path: Path,
    config: TrainConfig,
    model: FlashMDModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng: np.random.Generator,
) -> tuple[int, int, int, float, dict, list]:
    tensor_path, meta_path = _state_files(path)
    if not meta_path.exists() or not tensor_path.exists():
        raise ResumeError(f"no FlashMD training state at {path} (.json + .safetensors)")
    meta = json.loads(meta_path.read_text())
    ignore = ("max_steps", *EXECUTION_SETTINGS)
    now = {k: v for k, v in config.to_dict().items() if k not in ignore}
    before = {k: v for k, v in meta["config"].items() if k not in ignore}
    if json.loads(json.dumps(now)) != before:
        diff = sorted(k for k in now if json.loads(json.dumps(now[k])) != before.get(k))
        raise ResumeError(f"cannot resume: settings differ from the saved run ({', '.join(diff)})")
    tensors = load_file(str(tensor_path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    rng.bit_generator.state = meta["numpy_rng"]
    return (
        meta["step"],
        meta["best_step"],
        meta["bad"],
        meta["wall_time_s"],
        meta["best"],
        meta["history"],
    )


def _load_best(path: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(_state_files(path)[0]))
    return {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
