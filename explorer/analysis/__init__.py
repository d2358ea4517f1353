"""Pure analysis functions of a :class:`~explorer.trajectory.Trajectory`.

Modules: ``msd`` (mean squared displacement), ``diffusion`` (self-diffusivity
and Arrhenius fits), ``rdf`` (radial distribution functions and scores),
``pmf`` (potentials of mean force on lattice planes), ``polymer`` (Rg², R(s),
Rg² autocorrelation and relaxation time, contact maps, EMD). Each is tested against an
independent tool or an analytic case.
"""
