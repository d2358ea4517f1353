"""FlashMD: long-stride direct prediction of MD trajectories (seed 002, §3, App A–D, H, K).

Modules: ``model`` (equivariant PaiNN predictor of Δq·√m and p/√m), ``data`` (pairs from
NVE trajectories with time reversal), ``train`` (eq. 6, App B.2 model selection),
``integrators`` (ASE ``MolecularDynamics`` subclasses: NVE, Langevin OBABO, Bussi SVR),
``filters`` (energy conservation, random rotation, thermostat half-steps), ``simulate``
(the session protocol), ``evaluate`` (App H metrics, rollouts), ``systems`` (liquid argon
and the Al(110) slab), ``energy`` (the energy model) and ``lj`` (a vectorised LJ).
"""
