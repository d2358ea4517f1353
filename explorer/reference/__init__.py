"""Reference molecular dynamics: the slow, trusted baseline the accelerated models are judged by.

Runs integrate Newton's equations with ASE and a universal machine-learned
interatomic potential (CHGNet by default, MACE-MP on request) or a classical
potential (EMT, Lennard-Jones) for tests and examples. Calculators come from
:func:`explorer.reference.calculators.make_calculator`; energies are in eV,
lengths in Å, forces in eV/Å and stresses in eV/Å³ (ASE's units).
"""
