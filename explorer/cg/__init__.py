"""The multi-scale CG simulator (MSGN; Fu et al., TMLR 2023) for single polymer chains.

Modules: ``polymers`` (OpenMM reference MD, chemistry space), ``coarsen`` (METIS CG map),
``data`` (training examples), ``model`` (embedding / dynamics / score GNNs), ``train``,
``simulate`` (the Simulator of the session protocol), ``evaluate`` (Table 2 metrics).
"""
