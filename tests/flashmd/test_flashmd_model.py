"""FlashMD network: symmetries (E(3), permutations, lattice shifts) and conservation laws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.errors import UnknownElementError
from explorer.flashmd.model import FlashMDConfig, FlashMDModel, enforce_conservation


def _system(seed: int = 0, n_side: int = 2) -> dict[str, torch.Tensor]:
    """A perturbed fcc Ar/Kr mixture (4 n³ atoms) with random momenta, float64."""
    rng = np.random.default_rng(seed)
    a = 5.3
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cells = np.array(
        [[i, j, k] for i in range(n_side) for j in range(n_side) for k in range(n_side)]
    )
    frac = (cells[:, None, :] + basis[None]).reshape(-1, 3)
    positions = frac * a + rng.normal(scale=0.2, size=frac.shape)
    n = len(positions)
    numbers = np.where(rng.random(n) < 0.5, 18, 36)
    masses = np.where(numbers == 18, 39.948, 83.798)
    momenta = rng.normal(scale=0.05, size=(n, 3))
    cell = np.diag([a * n_side] * 3) + rng.normal(scale=0.3, size=(3, 3))
    t = torch.as_tensor
    return {
        "numbers": t(numbers),
        "positions": t(positions),
        "momenta": t(momenta),
        "masses": t(masses),
        "cell": t(cell),
    }


@pytest.fixture(scope="module", params=[(), (0.5, 1.0)], ids=["plain", "ballistic"])
def model(request) -> FlashMDModel:
    """The symmetry tests run on the plain model and on one with ballistic geometries."""
    torch.manual_seed(0)
    net = FlashMDModel(FlashMDConfig(elements=(18, 36), stride_fs=32.0, num_features=16,
                                     num_rbf=8, num_layers=2, cutoff=5.0,
                                     ballistic_fractions=request.param))  # fmt: skip
    net.set_scales(0.8, 0.01)
    return net.double().eval()


def _predict(model: FlashMDModel, s: dict, constrain: bool = True) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model.predict(
            s["numbers"], s["positions"], s["momenta"], s["masses"], s["cell"], constrain=constrain
        )


def _orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) < 0) != reflect:
        q[:, 0] *= -1
    return torch.as_tensor(q)


@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_and_reflection_equivariance(model: FlashMDModel, reflect: bool) -> None:
    s = _system()
    dq, p = _predict(model, s)
    rot = _orthogonal(1, reflect)
    r = {**s, "positions": s["positions"] @ rot.T, "momenta": s["momenta"] @ rot.T,
         "cell": s["cell"] @ rot.T}  # fmt: skip
    dq_r, p_r = _predict(model, r)
    assert torch.allclose(dq_r, dq @ rot.T, atol=1e-10)
    assert torch.allclose(p_r, p @ rot.T, atol=1e-12)
    assert float(dq.abs().max()) > 1e-3  # the check is not vacuous


def test_permutation_equivariance(model: FlashMDModel) -> None:
    s = _system()
    perm = torch.as_tensor(np.random.default_rng(2).permutation(len(s["numbers"])))
    permuted = {k: (v[perm] if k != "cell" else v) for k, v in s.items()}
    dq, p = _predict(model, s)
    dq_p, p_p = _predict(model, permuted)
    assert torch.allclose(dq_p, dq[perm], atol=1e-12)
    assert torch.allclose(p_p, p[perm], atol=1e-12)


def test_lattice_shift_and_translation_invariance(model: FlashMDModel) -> None:
    s = _system()
    dq, p = _predict(model, s)
    shifted = s["positions"].clone()
    shifted[3] += s["cell"][0] - 2 * s["cell"][2]  # one atom moved to a periodic image
    shifted = shifted + torch.tensor([0.3, -1.2, 2.0])  # and everything translated
    dq_s, p_s = _predict(model, {**s, "positions": shifted})
    assert torch.allclose(dq_s, dq, atol=1e-10)
    assert torch.allclose(p_s, p, atol=1e-12)


def test_constrained_output_conserves_momentum_and_moves_com_uniformly(
    model: FlashMDModel,
) -> None:
    s = _system()
    m = s["masses"].unsqueeze(-1)
    stride = model.config.stride_fs
    _, p_raw = _predict(model, s, constrain=False)
    assert float((p_raw.sum(0) - s["momenta"].sum(0)).abs().max()) > 1e-6  # raw violates eq. 4
    dq, p = _predict(model, s)
    total_p = s["momenta"].sum(0)
    assert torch.allclose(p.sum(0), total_p, atol=1e-12)  # eq. 4
    assert torch.allclose((m * dq).sum(0), stride * total_p, atol=1e-10)  # eq. 5


def test_enforce_conservation_is_per_structure() -> None:
    rng = np.random.default_rng(3)
    masses = torch.as_tensor(rng.uniform(1, 50, 10))
    momenta = torch.as_tensor(rng.normal(size=(10, 3)))
    batch = torch.tensor([0] * 4 + [1] * 6)
    dq, p = enforce_conservation(
        torch.as_tensor(rng.normal(size=(10, 3))), torch.as_tensor(rng.normal(size=(10, 3))),
        momenta, masses, 10.0, batch,
    )  # fmt: skip
    for b in (0, 1):
        sel = batch == b
        assert torch.allclose(p[sel].sum(0), momenta[sel].sum(0), atol=1e-12)
        com = (masses[sel, None] * dq[sel]).sum(0)
        assert torch.allclose(com, 10.0 * momenta[sel].sum(0), atol=1e-12)


def test_unknown_element_is_rejected(model: FlashMDModel) -> None:
    s = _system()
    s["numbers"] = s["numbers"].clone()
    s["numbers"][0] = 29
    with pytest.raises(UnknownElementError, match="Cu"):
        _predict(model, s)


def _free_flight_model() -> FlashMDModel:
    torch.manual_seed(1)
    net = FlashMDModel(FlashMDConfig(elements=(18, 36), stride_fs=32.0, num_features=16,
                                     num_rbf=8, num_layers=2, cutoff=5.0,
                                     free_flight_baseline=True,
                                     ballistic_fractions=(1.0,)))  # fmt: skip
    net.set_scales(0.3, 0.004)
    return net.double().eval()


def test_free_flight_baseline_with_silent_heads_is_a_free_particle_step() -> None:
    net = _free_flight_model()
    for head in (net.head_q, net.head_p):
        for param in head.parameters():
            param.data.zero_()
    s = _system(seed=3)
    dq, p_new = _predict(net, s)
    velocities = s["momenta"] / s["masses"].unsqueeze(-1)
    torch.testing.assert_close(dq, velocities * 32.0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p_new, s["momenta"], rtol=1e-12, atol=1e-12)


def test_free_flight_targets_invert_the_prediction() -> None:
    """standardise_targets(predict(x)) recovers the raw network output."""
    net = _free_flight_model()
    s = _system(seed=4)
    args = (s["numbers"], s["positions"], s["momenta"], s["masses"], s["cell"])
    with torch.no_grad():
        y_q, y_p = net(*args, net.build_graph(s["positions"], s["cell"]))
        dq, p_new = net.predict(*args, constrain=False)
    sqrt_m = torch.sqrt(s["masses"]).unsqueeze(-1)
    t_q, t_p = net.standardise_targets(dq * sqrt_m, p_new / sqrt_m, s["momenta"], s["masses"])
    torch.testing.assert_close(t_q, y_q)
    torch.testing.assert_close(t_p, y_p)


@pytest.mark.parametrize("reflect", [False, True])
def test_free_flight_model_stays_equivariant(reflect: bool) -> None:
    net = _free_flight_model()
    s = _system(seed=5)
    rot = _orthogonal(7, reflect)
    dq, p_new = _predict(net, s)
    turned = dict(s, positions=s["positions"] @ rot.T, momenta=s["momenta"] @ rot.T,
                  cell=s["cell"] @ rot.T)  # fmt: skip
    dq_r, p_r = _predict(net, turned)
    torch.testing.assert_close(dq_r, dq @ rot.T, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(p_r, p_new @ rot.T, rtol=1e-9, atol=1e-10)


def test_each_ballistic_fraction_adds_an_edge_geometry_and_is_validated() -> None:
    torch.manual_seed(2)
    config = dict(elements=(18, 36), stride_fs=32.0, num_features=8, num_rbf=6, num_layers=1,
                  cutoff=5.0)  # fmt: skip
    plain = FlashMDModel(FlashMDConfig(**config)).double()
    ballistic = FlashMDModel(FlashMDConfig(**config, ballistic_fractions=(1.0,))).double()
    assert len(ballistic.messages[0].filters) == 2 and len(plain.messages[0].filters) == 1
    with pytest.raises(ValueError, match="ballistic_fractions"):
        FlashMDConfig(ballistic_fractions=(0.0,))
    assert FlashMDConfig(ballistic_fractions=[1]).to_dict()["ballistic_fractions"] == [1.0]
