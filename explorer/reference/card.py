"""The dataset card of the reference trajectories: a table, Arrhenius fits, a plot.

Everything in the card is recomputed from the H5MD files with our analysis
code, so the card cannot drift from the data: run ``accelmd data --card``.
Units: K, ps, fs, Å², cm²/s, eV.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.analysis.diffusion import ArrheniusResult, arrhenius_fit, diffusion_coefficient
from explorer.analysis.msd import msd
from explorer.errors import AnalysisError, TrajectoryFileError
from explorer.h5md import read_h5md
from explorer.reference.dataset import REFERENCE_DIR, REFERENCE_RUNS

CARD_FILE = "README.md"
PLOT_FILE = "arrhenius.png"
LI = "Li"
# Å². Thermal vibration alone keeps a lattice species' MSD at a few tenths of Å² even at
# 1200 K (P in LGPS: 0.5 Å²); when even the least mobile non-Li species exceeds this, the
# anion framework has melted or reorganised and Li transport there is liquid-like.
FRAMEWORK_MOBILE_A2 = 1.0

# Literature activation energies of Li diffusion (eV) for comparison, where known.
LITERATURE_EA_EV = {
    "LGPS": (0.19, "AIMD, LiFlow paper Table (López et al. data), 0.192 eV"),
    "Li6PS5Cl": (0.2, "AIMD ~0.2 eV (de Klerk et al., Chem. Mater. 2016), ordered cell"),
    "Li3PS4-beta": (0.36, "impedance, nanoporous β-Li3PS4, 0.356 eV (Liu et al., JACS 2013)"),
    "Li3N": (0.5, "tracer/NMR in-plane ~0.5 eV for vacancy migration (Alpen 1977)"),
}


@dataclass(frozen=True)
class TrajectoryRow:
    """One line of the card (see the module docstring for units)."""

    file: str
    material: str
    split: str
    n_atoms: int
    temperature_K: float
    production_ps: float
    timestep_fs: float
    n_frames: int
    mlip: str
    msd_li_end_A2: float
    msd_frame_end_A2: float
    D_li_cm2_s: float | None
    D_li_std_cm2_s: float | None
    complete: bool = True
    msd_framework_end_A2: float = 0.0

    @property
    def framework_intact(self) -> bool:
        """Whether the least mobile non-Li species stayed on its sites (module constant)."""
        return self.msd_framework_end_A2 <= FRAMEWORK_MOBILE_A2


def trajectory_row(path: Path, split: str = "") -> TrajectoryRow:
    """Summarise one reference file: sizes, protocol, end MSDs, D_Li ± σ."""
    traj = read_h5md(path)
    meta = traj.metadata
    curves = msd(traj)
    frame_symbols = [s for s in curves.species if s != LI]
    frame_end = [curves.msd[s][-1] * curves.n_atoms[s] for s in frame_symbols]
    n_frame_atoms = sum(curves.n_atoms[s] for s in frame_symbols)
    try:
        diffusion = diffusion_coefficient(traj, LI)
        d, d_std = diffusion.D_cm2_s, diffusion.D_std_cm2_s
    except AnalysisError:
        d = d_std = None
    calculator = meta.get("calculator", {})
    mlip = f"{calculator.get('name', '?')} {calculator.get('version', '')}".strip()
    return TrajectoryRow(
        file=path.name,
        material=str(meta.get("material", path.stem.rpartition("_")[0])),
        split=split,
        n_atoms=traj.n_atoms,
        temperature_K=float(meta.get("temperature_K", np.nan)),
        production_ps=float(traj.times_ps[-1] - traj.times_ps[0]),
        timestep_fs=float(meta.get("timestep_fs", np.nan)),
        n_frames=traj.n_frames,
        mlip=mlip,
        msd_li_end_A2=float(curves.msd[LI][-1]),
        msd_frame_end_A2=float(sum(frame_end) / n_frame_atoms) if n_frame_atoms else 0.0,
        D_li_cm2_s=d,
        D_li_std_cm2_s=d_std,
        # Files of other producers carry no status; only a running run is partial.
        complete=meta.get("status", "complete") != "running",
        msd_framework_end_A2=min((curves.msd[s][-1] for s in frame_symbols), default=0.0),
    )


def arrhenius_by_material(rows: Sequence[TrajectoryRow]) -> dict[str, ArrheniusResult]:
    """Ea of Li per material from its finished training runs (≥ 2 temperatures)."""
    grouped: dict[str, list[TrajectoryRow]] = defaultdict(list)
    for row in rows:
        if row.split == "train" and row.complete and row.D_li_cm2_s and row.D_li_cm2_s > 0:
            grouped[row.material].append(row)
    fits = {}
    for material, group in grouped.items():
        if len({r.temperature_K for r in group}) < 2:
            continue
        fits[material] = arrhenius_fit(
            [r.temperature_K for r in group],
            [r.D_li_cm2_s for r in group],
            [r.D_li_std_cm2_s for r in group],
        )
    return fits


def _format_table(rows: Sequence[TrajectoryRow]) -> list[str]:
    lines = [
        "| file | split | atoms | T (K) | ps | dt (fs) | frames | MLIP | "
        "MSD_Li end (Å²) | D_Li (cm²/s) | MSD frame end (Å²) | framework |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = "n/a" if r.D_li_cm2_s is None else f"{r.D_li_cm2_s:.2e} ± {r.D_li_std_cm2_s:.1e}"
        name = r.file if r.complete else f"{r.file} (running)"
        lines.append(
            f"| {name} | {r.split} | {r.n_atoms} | {r.temperature_K:.0f} | "
            f"{r.production_ps:.2f} | {r.timestep_fs:g} | {r.n_frames} | {r.mlip} | "
            f"{r.msd_li_end_A2:.3g} | {d} | {r.msd_frame_end_A2:.3g} | "
            f"{'intact' if r.framework_intact else 'mobile'} |"
        )
    return lines


def _format_framework_note(rows: Sequence[TrajectoryRow]) -> list[str]:
    mobile = [r for r in rows if not r.framework_intact]
    intro = (
        "Framework: *intact* when the least mobile non-Li species ends with an MSD ≤ "
        f"{FRAMEWORK_MOBILE_A2:g} Å² (thermal vibration only); *mobile* when it exceeds that: "
        "the anion framework melted or reorganised in CHGNet, and D_Li there describes a "
        "liquid-like state, not lattice hopping."
    )
    if not mobile:
        return [intro, "", "All frameworks stayed intact."]
    listed = ", ".join(f"{r.file} ({r.msd_framework_end_A2:.2g} Å²)" for r in mobile)
    return [intro, "", f"Mobile frameworks: {listed}."]


def literature_verdict(fit: ArrheniusResult, literature_eV: float | None) -> str:
    """Plain words on how CHGNet's Ea compares with a literature value (eV)."""
    if literature_eV is None:
        return "no literature value"
    low, high = fit.Ea_ci95_eV
    diff = fit.Ea_eV - literature_eV
    if low <= literature_eV <= high:
        return f"agrees (literature inside the 95 % CI; difference {diff:+.2f} eV)"
    side = "lower" if diff < 0 else "higher"
    return f"CHGNet {side} by {abs(diff):.2f} eV (literature outside the 95 % CI)"


def _format_arrhenius(fits: dict[str, ArrheniusResult]) -> list[str]:
    lines = [
        "| material | Ea (eV) | 95 % CI (eV) | temperatures | literature (eV) "
        "| CHGNet vs literature |",
        "|---|---|---|---|---|---|",
    ]
    for material, fit in fits.items():
        low, high = fit.Ea_ci95_eV
        literature = LITERATURE_EA_EV.get(material)
        lit = f"{literature[0]:.2f} ({literature[1]})" if literature else "—"
        verdict = literature_verdict(fit, literature[0] if literature else None)
        lines.append(
            f"| {material} | {fit.Ea_eV:.3f} | ({low:.3f}, {high:.3f}) | {fit.n_points} | {lit} "
            f"| {verdict} |"
        )
    return lines


def plot_arrhenius(
    rows: Sequence[TrajectoryRow], fits: dict[str, ArrheniusResult], path: Path
) -> Path:
    """log10 D_Li against 1000/T with the fitted lines (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    by_material: dict[str, list[TrajectoryRow]] = defaultdict(list)
    for row in rows:
        if row.D_li_cm2_s and row.D_li_cm2_s > 0:
            by_material[row.material].append(row)
    for material, group in sorted(by_material.items()):
        temps = np.array([r.temperature_K for r in group])
        d = np.array([r.D_li_cm2_s for r in group])
        err = np.array([r.D_li_std_cm2_s for r in group]) / (d * np.log(10))
        markers = ["o" if r.split == "train" else "s" for r in group]
        line = ax.errorbar(1000 / temps, np.log10(d), yerr=err, fmt="none", capsize=2)
        color = line[2][0].get_color() if line[2] else None
        for x, y, m in zip(1000 / temps, np.log10(d), markers, strict=True):
            ax.plot(x, y, m, color=color, mfc="white" if m == "s" else color)
        if material in fits:
            grid = np.linspace(temps.min() * 0.95, temps.max() * 1.05, 50)
            fit = fits[material]
            ax.plot(
                1000 / grid,
                np.log10(fit.predict(grid)),
                "-",
                color=color,
                label=f"{material}: Ea = {fit.Ea_eV:.2f} eV",
            )
        else:
            ax.plot([], [], "s", color=color, label=f"{material} (held out)")
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("log10 D_Li (cm²/s)")
    ax.set_title("Reference MD (CHGNet, NVT): Li self-diffusivity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_card(directory: Path = REFERENCE_DIR) -> Path:
    """Recompute every row from the files and write README.md and arrhenius.png."""
    splits = {run.filename: run.split for run in REFERENCE_RUNS}
    rows, pending = [], []
    for path in sorted(directory.glob("*_*K.h5")):
        try:
            rows.append(trajectory_row(path, splits.get(path.name, "extra")))
        except TrajectoryFileError:  # still equilibrating: no production frame yet
            pending.append(path.name)
    pending += [run.filename for run in REFERENCE_RUNS if not (directory / run.filename).exists()]
    fits = arrhenius_by_material(rows)
    lines = [
        "# LiFlow reference dataset (generated by `accelmd data --card`; do not edit)",
        "",
        "CHGNet NVT (Nosé–Hoover chain, 10 links, damping 100 × dt) MD of catalogue",
        "materials, generated by `make data` (`explorer/reference/dataset.py` states the",
        "protocol and every deviation from the LiFlow paper). Positions are unwrapped,",
        "float32, every 10 steps; times from the start of production. D_Li from a",
        "linear fit of the MSD between 10 % and 50 % of the trajectory, ± its standard",
        "uncertainty; MSD at the end is ⟨|x(t_end) − x(0)|²⟩. Files still being",
        "generated appear with their current length.",
        "",
        *_format_table(rows),
        "",
        f"Not generated yet (no production frame): {', '.join(pending) or 'none'}.",
        "",
        *_format_framework_note(rows),
        "",
        "## Arrhenius fits of D_Li (training temperatures)",
        "",
        *_format_arrhenius(fits),
        "",
        f"![Arrhenius plot]({PLOT_FILE})",
        "",
    ]
    if rows:
        plot_arrhenius(rows, fits, directory / PLOT_FILE)
    card = directory / CARD_FILE
    card.write_text("\n".join(lines))
    return card
