"""LiFlow prior selector (paper §IV.3): predicts small/large displacements per species group.

The adaptive prior (eq. 10, :mod:`explorer.liflow.prior`) picks the small or large scale for
lithium and for the frame from a binary classifier fed with the initial structure and the
temperature. Our version:

* **Features.** The paper pools 128-d MACE-MP-0 invariant features; MACE is not available
  offline, so we pool CHGNet 0.3.0 atom features (64-d, the invariant node features after the
  second-to-last interaction block, ``return_atom_feas=True``; CHGNet is rotation, translation
  and permutation invariant). They are averaged over the Li atoms (``"li"``) and over every
  other atom (``"frame"``). A structure without Li has no ``"li"`` entry.
* **Labels.** A group is *large* if ``MSD_g(t_end) / t_end ≥ threshold`` over the reference
  run, with ``MSD_g(t_end)`` the mean of ``|r_i(t_end) − r_i(0)|²`` over the group's atoms
  (unwrapped positions, Å²) and ``t_end`` the run length (ps). The paper's threshold values were
  lost in extraction; ours are 1.0 Å²/ps for Li and 0.3 Å²/ps for the frame. A vibrating
  (non-hopping) atom saturates at an MSD of ~0.3–1 Å² (our 600 K LGPS / Li6PS5Cl reference
  runs: frame 0.05 and 0.09 Å²/ps over 10 ps; Li 5.0 and 1.7 Å²/ps), while 1.0 Å²/ps (10 Å² in
  10 ps, several Li hops of ~2.5–3 Å; D_Li ≈ 1.7e-5 cm²/s) marks a clearly diffusing Li
  sublattice. Frame atoms rarely hop; 0.3 Å²/ps (3 Å² in 10 ps, ≈ one hop) sits above the
  vibrational plateau and below a molten frame (D ~ 1e-5 cm²/s ⇒ 0.6 Å²/ps). The ratio
  over-weights the plateau for short runs: label from reference runs of ≳ 10 ps. A bundle
  may set its own Li threshold (``BundleSettings.li_label_threshold_A2_ps``):
  ``liflow_Li3InCl6`` uses 0.15 Å²/ps, so its 600-K run (0.47 Å²/ps, a few hops) is large.
* **Model.** One :class:`PriorClassifier` per group (the pooled features mean different things
  for Li and frame): MLP ``in_dim + 1 → 32 → 16 → 1`` with SiLU, input
  ``concat(features, T / 1000 K)`` standardised by stored buffers, trained with BCE.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import nn

from explorer.checkpoints import CHECKPOINT_DIR, load_checkpoint, save_checkpoint
from explorer.errors import PriorError
from explorer.liflow.prior import LITHIUM_Z
from explorer.trajectory import Trajectory

__all__ = [
    "DEFAULT_THRESHOLDS_A2_PS",
    "EXAMPLE_FRAME_FRACTIONS",
    "FAMILY",
    "FEATURE_DIM",
    "FEATURE_SOURCE",
    "GROUPS",
    "Example",
    "PriorClassifier",
    "PriorSelector",
    "build_examples",
    "load_chgnet",
    "msd_rate_labels",
    "species_features",
]

GROUPS: tuple[str, ...] = ("li", "frame")
FEATURE_DIM = 64
"""Width of CHGNet 0.3.0 atom features."""
FEATURE_SOURCE = "CHGNet 0.3.0 atom features"
FAMILY = "liflow-classifier"
DEFAULT_THRESHOLDS_A2_PS: dict[str, float] = {"li": 1.0, "frame": 0.3}
"""Our choice of ``MSD(t_end) / t_end`` thresholds (Å²/ps) separating small from large."""

_CHGNET: Any = None


def load_chgnet() -> Any:
    """The pretrained CHGNet 0.3.0 on CPU, loaded once per process (lazily)."""
    global _CHGNET
    if _CHGNET is None:
        from chgnet.model import CHGNet

        # CHGNet prints a banner on stdout even with verbose=False; stdout belongs to
        # the caller (``accelmd eval liflow --json`` prints its report there).
        with contextlib.redirect_stdout(sys.stderr):
            _CHGNET = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    return _CHGNET


def species_features(atoms: Atoms, model: Any = None) -> dict[str, np.ndarray]:
    """CHGNet atom features averaged over Li (``"li"``) and non-Li (``"frame"``) atoms.

    Returns float64 vectors of length :data:`FEATURE_DIM`; a group with no atoms is absent.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    model = load_chgnet() if model is None else model
    structure = AseAtomsAdaptor.get_structure(atoms)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CHGNet's own requires_grad warning
        out = model.predict_structure(structure, task="e", return_atom_feas=True)
    feas = np.asarray(out["atom_fea"], dtype=np.float64)
    is_li = np.asarray(atoms.numbers) == LITHIUM_Z
    masks = {"li": is_li, "frame": ~is_li}
    return {g: feas[m].mean(axis=0) for g, m in masks.items() if m.any()}


def msd_rate_labels(
    traj: Trajectory, threshold_A2_ps: float | dict[str, float] | None = None
) -> dict[str, bool]:
    """``{"li": large, "frame": large}`` from ``MSD_g(t_end) / t_end ≥ threshold`` (Å²/ps).

    ``threshold_A2_ps`` is one value for both groups or a per-group dict; default
    :data:`DEFAULT_THRESHOLDS_A2_PS`. Groups without atoms are absent.
    """
    thresholds = _thresholds(threshold_A2_ps)
    t_end = float(traj.times_ps[-1] - traj.times_ps[0])
    if not t_end > 0:
        raise PriorError("labelling needs a trajectory spanning a positive time")
    disp2 = np.sum((traj.positions[-1] - traj.positions[0]) ** 2, axis=-1)  # Å²
    is_li = np.asarray(traj.numbers) == LITHIUM_Z
    masks = {"li": is_li, "frame": ~is_li}
    return {g: bool(disp2[m].mean() / t_end >= thresholds[g]) for g, m in masks.items() if m.any()}


def _thresholds(value: float | dict[str, float] | None) -> dict[str, float]:
    if value is None:
        return dict(DEFAULT_THRESHOLDS_A2_PS)
    if isinstance(value, dict):
        return {**DEFAULT_THRESHOLDS_A2_PS, **value}
    return dict.fromkeys(GROUPS, float(value))


@dataclass
class Example:
    """One training/test sample: pooled features per group, temperature (K), labels, source."""

    features: dict[str, np.ndarray]
    temperature_K: float
    labels: dict[str, bool]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


#: Where in each reference run the classifier's training structures are taken (fractions
#: of the run; 0 = its first frame). See :func:`build_examples`.
EXAMPLE_FRAME_FRACTIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def build_examples(
    paths: list[str | Path],
    threshold_A2_ps: float | dict[str, float] | None = None,
    model: Any = None,
    frame_fractions: tuple[float, ...] = EXAMPLE_FRAME_FRACTIONS,
    include_start: bool = True,
) -> list[Example]:
    """Examples from reference H5MD runs, all with the run's label and ``temperature_K``.

    One example per frame at ``frame_fractions`` of each run and, with ``include_start``,
    one for the structure the run started from (the catalogue material named by the
    metadata, repeated by its ``supercell``; skipped when the metadata names none). Users
    start from relaxed catalogue cells, whose features differ from a thermalised frame's:
    trained on first frames only, the classifier gave LGPS at 800 and 1200 K the large
    frame prior from the catalogue cell (small from the MD frame, as labelled) and
    Li3InCl6 at 800–1200 K the small Li prior. ``Example.source`` is ``file#frame K``
    or ``file#start``.
    """
    from explorer.h5md import read_h5md

    examples = []
    for path in paths:
        traj = read_h5md(path)
        temperature = float(traj.metadata.get("temperature_K", np.nan))
        if not np.isfinite(temperature):
            raise PriorError(f"{path}: no temperature_K in the trajectory metadata")
        labels = msd_rate_labels(traj, threshold_A2_ps)
        structures = {
            f"frame {k}": traj.to_atoms(k)
            for k in sorted({round(f * (traj.n_frames - 1)) for f in frame_fractions})
        }
        start = _start_structure(traj.metadata) if include_start else None
        if start is not None:
            structures["start"] = start
        for tag, atoms in structures.items():
            examples.append(
                Example(
                    features=species_features(atoms, model),
                    temperature_K=temperature,
                    labels=labels,
                    source=f"{Path(path).name}#{tag}",
                )
            )
    return examples


def _start_structure(metadata: dict[str, Any]) -> Atoms | None:
    """The catalogue cell a reference run started from, or None if it names none."""
    from explorer.errors import UnknownMaterialError
    from explorer.materials import load_material

    name = metadata.get("material")
    if not name:
        return None
    try:
        atoms = load_material(str(name))
    except UnknownMaterialError:
        return None
    return atoms.repeat(tuple(int(n) for n in metadata.get("supercell", (1, 1, 1))))


class PriorClassifier(nn.Module):
    """Binary small/large classifier for one species group; logits > 0 mean *large*."""

    def __init__(self, group: str = "li", in_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        if group not in GROUPS:
            raise PriorError(f"group must be one of {GROUPS}, got {group!r}")
        self.group, self.in_dim = group, in_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_dim + 1, 32), nn.SiLU(), nn.Linear(32, 16), nn.SiLU(), nn.Linear(16, 1)
        )
        self.register_buffer("mean", torch.zeros(in_dim + 1, dtype=torch.float64))
        self.register_buffer("std", torch.ones(in_dim + 1, dtype=torch.float64))

    def _inputs(self, features: np.ndarray, temperature_K: np.ndarray) -> torch.Tensor:
        x = np.concatenate([np.atleast_2d(features), np.reshape(temperature_K, (-1, 1)) / 1e3], 1)
        x = (torch.as_tensor(x, dtype=torch.float64) - self.mean) / self.std
        return x.float()

    def _data(self, examples: list[Example]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        usable = [e for e in examples if self.group in e.features and self.group in e.labels]
        if not usable:
            raise PriorError(f"no examples with {self.group!r} features and labels")
        feats = np.stack([e.features[self.group] for e in usable])
        temps = np.array([e.temperature_K for e in usable], dtype=np.float64)
        labels = np.array([e.labels[self.group] for e in usable], dtype=np.float64)
        return feats, temps, labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of *large*, shape ``(batch,)``, from standardised inputs."""
        return self.mlp(x).squeeze(-1)

    def fit(
        self, examples: list[Example], epochs: int = 500, lr: float = 1e-2, seed: int = 0
    ) -> list[float]:
        """Full-batch Adam on BCE; re-initialises weights from ``seed``. Returns loss history."""
        feats, temps, labels = self._data(examples)
        raw = np.concatenate([feats, temps[:, None] / 1e3], 1)
        self.mean.copy_(torch.as_tensor(raw.mean(0)))
        self.std.copy_(torch.as_tensor(np.where(raw.std(0) > 1e-8, raw.std(0), 1.0)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
        x, y = self._inputs(feats, temps), torch.as_tensor(labels, dtype=torch.float32)
        optimiser = torch.optim.Adam(self.parameters(), lr=lr)
        history = []
        self.train()
        for _ in range(epochs):
            optimiser.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(self(x), y)
            loss.backward()
            optimiser.step()
            history.append(float(loss.detach()))
        self.eval()
        return history

    @torch.no_grad()
    def probability(self, features: np.ndarray, temperature_K: float | np.ndarray) -> np.ndarray:
        """P(large) for one ``(in_dim,)`` or a batch ``(B, in_dim)`` of pooled features."""
        return torch.sigmoid(self(self._inputs(features, temperature_K))).numpy()

    def predict(self, features: np.ndarray, temperature_K: float) -> bool:
        """Whether this group's displacements are *large* at ``temperature_K`` (K)."""
        return bool(self.probability(features, temperature_K)[0] >= 0.5)

    def evaluate(self, examples: list[Example]) -> float:
        """Accuracy (0–1) on the examples that carry this group."""
        feats, temps, labels = self._data(examples)
        return float(np.mean((self.probability(feats, temps) >= 0.5) == labels.astype(bool)))


#: Structures whose CHGNet features a :class:`PriorSelector` keeps.
FEATURE_CACHE_SIZE = 16


def structure_key(atoms: Atoms) -> bytes:
    """A digest of what the features depend on: species, positions, cell and pbc."""
    digest = hashlib.sha256()
    for array in (atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()


class PriorSelector(nn.Module):
    """Both group classifiers plus the labelling thresholds; feeds ``li_large``/``frame_large``."""

    def __init__(
        self, in_dim: int = FEATURE_DIM, thresholds_A2_ps: dict[str, float] | None = None
    ) -> None:
        super().__init__()
        self.classifiers = nn.ModuleDict({g: PriorClassifier(g, in_dim) for g in GROUPS})
        self.thresholds_A2_ps = _thresholds(thresholds_A2_ps)
        self.card: dict[str, Any] = {}
        self._features: dict[bytes, dict[str, np.ndarray]] = {}
        self._cache_lock = threading.Lock()

    def fit(self, examples: list[Example], **kwargs: Any) -> dict[str, list[float]]:
        """Train each group's classifier (kwargs as :meth:`PriorClassifier.fit`)."""
        return {g: c.fit(examples, **kwargs) for g, c in self.classifiers.items()}

    def evaluate(self, examples: list[Example]) -> dict[str, float]:
        """Accuracy per group."""
        return {g: c.evaluate(examples) for g, c in self.classifiers.items()}

    def predict(self, atoms: Atoms, temperature_K: float, model: Any = None) -> dict[str, bool]:
        """``{"li": large, "frame": large}`` for a structure at ``temperature_K`` (K).

        The CHGNet features of the last few structures (default model) are kept: a UI
        runs the same structure at several temperatures and seeds, and the CHGNet pass
        is a large part of the time to the first frame (0.1–0.5 s here).
        """
        if model is None:
            key = structure_key(atoms)
            with self._cache_lock:
                feats = self._features.pop(key, None)
            if feats is None:
                feats = species_features(atoms)
            with self._cache_lock:
                self._features[key] = feats  # most recent last
                while len(self._features) > FEATURE_CACHE_SIZE:
                    self._features.pop(next(iter(self._features)))
        else:
            feats = species_features(atoms, model)
        return {g: self.classifiers[g].predict(f, temperature_K) for g, f in feats.items()}

    def save(self, name: str, directory: Path = CHECKPOINT_DIR, **card: Any) -> Path:
        """Write a checkpoint; extra ``card`` entries (training files, accuracy…) are kept."""
        full = {
            "family": FAMILY,
            "feature_source": FEATURE_SOURCE,
            "in_dim": self.classifiers["li"].in_dim,
            "thresholds_A2_ps": self.thresholds_A2_ps,
            "label_criterion": "MSD_g(t_end) / t_end >= threshold (A^2/ps), reference run",
            **card,
        }
        return save_checkpoint(name, dict(self.classifiers.items()), full, directory)

    @classmethod
    def load(cls, name_or_path: str | Path, directory: Path = CHECKPOINT_DIR) -> PriorSelector:
        """Read a checkpoint written by :meth:`save` (family must be ``liflow-classifier``)."""
        ckpt = load_checkpoint(name_or_path, directory)
        if ckpt.family != FAMILY:
            raise PriorError(f"{ckpt.name}: family {ckpt.family!r} is not {FAMILY!r}")
        selector = cls(int(ckpt.card["in_dim"]), ckpt.card.get("thresholds_A2_ps"))
        for group, classifier in selector.classifiers.items():
            classifier.load_state_dict(ckpt.state_dicts[group])
        selector.card = ckpt.card
        return selector
