# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Coursework exercises: diffusion, Arrhenius, and long strides
#
# Three exercises with checkable answers. Each has
#
# * a **question**,
# * a cell for **your answer** (set the variable; `None` skips the check),
# * a **worked answer** with `assert`s (read it after trying), and
# * a **check** that compares your value with the worked one.
#
# Units: Å, ps, K, eV. D in Å²/ps (1 Å²/ps = 10⁻⁴ cm²/s).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from ase import units
from ase.units import kB

from explorer.analysis.diffusion import arrhenius_fit, diffusion_coefficient
from explorer.analysis.msd import msd
from explorer.testing import brownian_trajectory

QUICK = os.environ.get("QUICK", "1") == "1"


def check(name, yours, expected, rel_tol):
    """Compare your answer with the worked one (None = not attempted)."""
    if yours is None:
        print(f"{name}: not attempted (expected ≈ {expected:.4g})")
        return
    ok = abs(yours - expected) <= rel_tol * abs(expected)
    print(f"{name}: yours {yours:.4g}, expected {expected:.4g} → {'correct' if ok else 'try again'}")


# %% [markdown]
# ## Exercise 1: D from the slope of the MSD
#
# 64 Li atoms do independent random walks; each Cartesian step over Δt = 0.1 ps is
# normal with variance 2 D Δt and D = 0.25 Å²/ps.
#
# **(a)** Derive MSD(t) for a 3-D random walk. **(b)** Compute the time-origin-averaged
# MSD of the trajectory below (`explorer.analysis.msd.msd`), fit a straight line on the
# lag window 1–5 ps, and give D = slope / 6. **(c)** How far is it from the true
# value, and how would you make it closer?

# %%
D_TRUE = 0.25
walk = brownian_trajectory(D_TRUE, n_atoms=64, n_frames=1000, dt_ps=0.1, seed=1)
m = msd(walk, species=["Li"])
print(f"{walk.n_frames} frames, {walk.times_ps[-1]:.1f} ps, {walk.n_atoms} atoms")

# %%
# Your answer (Å²/ps):
my_D = None

# %% [markdown]
# ### Worked answer
#
# (a) Each Cartesian displacement after n steps is a sum of n independent N(0, 2DΔt)
# steps, so ⟨Δx²⟩ = 2 D t per direction and MSD(t) = ⟨Δx² + Δy² + Δz²⟩ = **6 D t**.
#
# (b) The fit:

# %%
window = (m.times_ps >= 1.0) & (m.times_ps <= 5.0)
slope, intercept = np.polyfit(m.times_ps[window], m.msd["Li"][window], 1)
D_fit = slope / 6
fit = diffusion_coefficient(walk, "Li", start_ps=1.0, end_ps=5.0)
print(f"D from the slope: {D_fit:.4f} Å²/ps; explorer fit (GLS): {fit.D_A2_ps:.4f} ± {fit.D_std_A2_ps:.4f}")
print(f"true D: {D_TRUE} Å²/ps = {D_TRUE * 1e-4:.2e} cm²/s")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(m.times_ps, m.msd["Li"], label="MSD (origin-averaged)")
ax.plot(m.times_ps, 6 * D_TRUE * m.times_ps, "k--", label="6 D t (exact)")
ax.axvspan(1, 5, alpha=0.15, label="fit window")
ax.set(xlabel="t / ps", ylabel="MSD / Å²", xlim=(0, 20), ylim=(0, 6 * D_TRUE * 20 * 1.3))
ax.legend()
plt.show()

assert abs(D_fit - D_TRUE) < 0.1 * D_TRUE
assert abs(fit.D_A2_ps - D_fit) < 0.05 * D_TRUE  # same data, same window
assert abs(intercept) < 0.5  # no ballistic regime or vibrations: the line goes through 0

# %% [markdown]
# (c) The error is statistical: 64 atoms × (a few independent windows of 5 ps in
# 100 ps). It shrinks roughly as 1/√(N_atoms · T_total / t_window): more atoms or a
# longer trajectory. A window at long lags uses fewer independent origins and is
# noisier, one at very short lags is, in real MD, spoiled by ballistic motion and
# vibrations (the non-zero intercept).

# %%
check("Exercise 1", my_D, D_fit, rel_tol=0.05)

# %% [markdown]
# ## Exercise 2: an Arrhenius fit
#
# Li diffusivities of a solid electrolyte from MD at five temperatures (made up, but
# realistic for a fast conductor):
#
# | T / K | 600 | 700 | 800 | 900 | 1000 |
# |---|---|---|---|---|---|
# | D / (Å²/ps) | 0.0124 | 0.0268 | 0.0526 | 0.0828 | 0.124 |
#
# **(a)** Fit ln D = ln D₀ − E_a / (k_B T) and give E_a in eV (k_B = 8.617×10⁻⁵ eV/K).
# **(b)** Extrapolate D to room temperature (300 K) and convert it to cm²/s.
# **(c)** Why is that extrapolation risky?

# %%
T_data = np.array([600.0, 700.0, 800.0, 900.0, 1000.0])
D_data = np.array([0.0124, 0.0268, 0.0526, 0.0828, 0.124])

# Your answers: activation energy (eV) and D(300 K) (cm²/s)
my_Ea = None
my_D300_cm2_s = None

# %% [markdown]
# ### Worked answer

# %%
x = 1.0 / (kB * T_data)
slope, ln_D0 = np.polyfit(x, np.log(D_data), 1)
Ea = -slope
D300 = np.exp(ln_D0 - Ea / (kB * 300.0))  # Å²/ps
D300_cm2_s = D300 * 1e-4
result = arrhenius_fit(T_data, D_data)
print(f"E_a = {Ea:.3f} eV (explorer: {result.Ea_eV:.3f} eV, 95 % CI {result.Ea_ci95_eV[0]:.3f}–{result.Ea_ci95_eV[1]:.3f})")
print(f"D(300 K) = {D300:.2e} Å²/ps = {D300_cm2_s:.2e} cm²/s")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(1000 / T_data, D_data, "o", label="data")
t_line = np.linspace(300, 1000, 50)
ax.semilogy(1000 / t_line, result.predict(t_line), "--", label=f"fit, E_a = {Ea:.2f} eV")
ax.set(xlabel="1000 / T  (1/K)", ylabel="D / (Å²/ps)")
ax.legend()
plt.show()

assert abs(Ea - 0.30) < 0.02
assert abs(result.Ea_eV - Ea) < 1e-6
assert result.Ea_ci95_eV[0] < Ea < result.Ea_ci95_eV[1]
assert 1e-9 < D300_cm2_s < 1e-8  # ≈ 3.8e-9 cm²/s

# %% [markdown]
# (c) Five points between 600 and 1000 K constrain the slope well only there; 300 K is
# far outside (1000/T = 3.3 against 1.0–1.7), so a small error in E_a is multiplied by
# a large Δ(1/T). Worse, the mechanism may change (a phase transition, ordering of the
# Li sublattice, a different rate-limiting hop), bending the Arrhenius line.

# %%
check("Exercise 2 (E_a)", my_Ea, Ea, rel_tol=0.03)
check("Exercise 2 (D 300 K)", my_D300_cm2_s, D300_cm2_s, rel_tol=0.2)

# %% [markdown]
# ## Exercise 3: stride and energy error in FlashMD
#
# FlashMD predicts positions and momenta one stride Δτ ahead. Take ten frames of the
# held-out Al(110) reference (EMT, 700 K) and make **one** NVE step from each, without
# the energy-conservation filter, with the 16 fs and with the 64 fs checkpoint. Measure
# the change of the total energy V + K per atom in that one step (V from the reference
# EMT calculator, through the simulator's `total_energy` observable).
#
# **(a)** Which stride makes the larger energy error per model call?
# **(b)** Convert both to an error *per picosecond* (assuming errors add up
# coherently: per-call error × calls per ps). Which one drifts faster per ps, and what
# does that tell you about the speed-up a long stride buys?
# **(c)** What does the energy-conservation filter do with this error?

# %%
from explorer.flashmd.simulate import FlashMDSimulator  # noqa: E402
from explorer.flashmd.systems import system_files  # noqa: E402
from explorer.h5md import read_h5md  # noqa: E402
from explorer.session import Rollout  # noqa: E402

reference = read_h5md(system_files("al110", "test")[0])
frames = np.linspace(0, reference.n_frames - 10, 6 if QUICK else 20).astype(int)


def one_stride_errors(checkpoint):
    """|ΔE_tot| per atom (meV) of one unfiltered NVE stride from each chosen frame."""
    sim = FlashMDSimulator.from_checkpoint(checkpoint, device="cpu")
    errors = []
    for f in frames:
        atoms = reference.to_atoms(int(f))
        atoms.set_momenta(reference.momenta[f] / (1000.0 * units.fs))
        knobs = {"thermostat": "none", "energy_conservation": False, "temperature_K": 700.0}
        rollout = Rollout(sim, atoms, 1, knobs)
        rollout.start()
        rollout.join()
        e = rollout.trajectory().energies["total_energy"]
        errors.append(abs(e[-1] - e[0]) / len(atoms) * 1e3)
    return sim.stride_fs, np.array(errors)


# Your answers: which stride (16 or 64) has the larger error per call, and per ps?
my_larger_per_call = None
my_larger_per_ps = None

# %% [markdown]
# ### Worked answer

# %%
per_call, per_ps = {}, {}
for ckpt in ("flashmd_al110_16fs", "flashmd_al110_64fs"):
    stride, err = one_stride_errors(ckpt)
    per_call[int(stride)] = float(np.mean(err))
    per_ps[int(stride)] = per_call[int(stride)] * 1000.0 / stride
    print(
        f"{stride:>3.0f} fs: |ΔE| per call {per_call[int(stride)]:7.2f} meV/atom "
        f"(spread {err.min():.2f}–{err.max():.2f}), × {1000 / stride:.1f} calls/ps "
        f"= {per_ps[int(stride)]:7.1f} meV/atom/ps"
    )
larger_per_call = max(per_call, key=per_call.get)
larger_per_ps = max(per_ps, key=per_ps.get)
print(f"larger per call: {larger_per_call} fs; larger per ps: {larger_per_ps} fs")
assert larger_per_call == 64, per_call
assert all(np.isfinite(v) and v > 0 for v in per_call.values())

# %% [markdown]
# (a) The 64 fs model: one call must extrapolate four times further along a curved
# trajectory, so its error per call is larger.
#
# (b) Per picosecond the 16 fs model makes four times more calls. Whether it ends up
# drifting more or less per ps depends on how fast the per-call error grows with the
# stride (printed above for these small models). If the per-call error grew *slower*
# than the stride, the long stride would win twice: fewer calls *and* less drift. In
# practice the error grows faster at some point; that is the stability limit seen in
# notebook 02, where the 64 fs model fails within a fraction of a picosecond of
# filtered NVE.
#
# (c) The filter rescales the momenta after each stride so that V + K is exactly the
# value before it: the drift becomes zero, at the price of putting the model's error
# into the kinetic energy of the next stride. When a stride *gains* more energy than
# the kinetic energy can give back, no rescaling can fix it and the simulator stops
# with a message.

# %%
if my_larger_per_call is not None:
    print("Exercise 3 (a):", "correct" if my_larger_per_call == larger_per_call else "try again")
if my_larger_per_ps is not None:
    print("Exercise 3 (b):", "correct" if my_larger_per_ps == larger_per_ps else "try again")
