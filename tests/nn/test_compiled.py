"""CompiledOrEager: compiler failures fall back to eager mode, model errors do not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explorer.nn import compiled as compiled_module
from explorer.nn.compiled import CompiledOrEager, maybe_compile


class Doubler(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 3:
            raise ValueError("need 3 columns")
        return 2 * x


def fake_compile(behaviour):
    def compile_(module, **kwargs):
        assert kwargs == {"dynamic": True}

        def run(*args, **kw):
            calls.append(args)
            if behaviour == "compiler":
                raise torch._dynamo.exc.TorchDynamoException("no C++ compiler found")
            return module(*args, **kw)

        return run

    calls: list = []
    return compile_, calls


def test_compiler_failure_falls_back_to_eager_once_and_logs(monkeypatch):
    compile_, calls = fake_compile("compiler")
    monkeypatch.setattr(compiled_module.torch, "compile", compile_)
    lines: list[str] = []
    wrapped = CompiledOrEager(Doubler(), lines.append)
    x = torch.ones(2, 3)
    assert torch.equal(wrapped(x), 2 * x) and not wrapped.compiled
    assert torch.equal(wrapped(x), 2 * x) and len(calls) == 1  # never retried
    assert len(lines) == 1 and "no C++ compiler" in lines[0] and "eager" in lines[0]


def test_model_errors_propagate_and_keep_the_compiled_path(monkeypatch):
    compile_, calls = fake_compile("ok")
    monkeypatch.setattr(compiled_module.torch, "compile", compile_)
    wrapped = CompiledOrEager(Doubler())
    with pytest.raises(ValueError, match="3 columns"):
        wrapped(torch.ones(2, 4))
    assert wrapped.compiled
    assert torch.equal(wrapped(torch.ones(1, 3)), torch.full((1, 3), 2.0)) and len(calls) == 2


def test_maybe_compile_off_returns_the_module_itself():
    module = Doubler()
    assert maybe_compile(module, False) is module
    assert isinstance(maybe_compile(module, True), CompiledOrEager)


def test_a_plain_function_compiles_and_falls_back_the_same_way(monkeypatch):
    compile_, calls = fake_compile("compiler")
    monkeypatch.setattr(compiled_module.torch, "compile", compile_)
    module = Doubler()
    wrapped = maybe_compile(module.forward, True)
    assert isinstance(wrapped, CompiledOrEager)
    assert torch.equal(wrapped(torch.ones(1, 3)), torch.full((1, 3), 2.0)) and len(calls) == 1
    assert not wrapped.compiled


class EdgeSum(nn.Module):
    """A sum over edges into nodes, as in every message-passing layer."""

    def forward(self, values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        from explorer.nn.painn import scatter_sum

        return scatter_sum(values * values, index, 7)


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_edge_sums_match_eager_on_one_and_several_threads(threads, monkeypatch):
    from explorer.nn import painn

    generator = torch.Generator().manual_seed(0)
    values = torch.randn(40, 3, 5, dtype=torch.float64, generator=generator)
    index = torch.randint(0, 7, (40,), generator=generator)
    seen = []
    original = painn.scatter_sum

    def spy(*args):
        seen.append(painn.PARALLEL_CPU_SCATTER)
        return original(*args)

    monkeypatch.setattr(painn, "scatter_sum", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        compiled = CompiledOrEager(EdgeSum())
        leaf = values.clone().requires_grad_(True)
        out = compiled(leaf, index)
        out.sum().backward()
    finally:
        torch.set_num_threads(before)
    assert compiled.compiled  # no fallback to eager
    # Multi-threaded compiled sums take ATen's scatter_reduce (painn.scatter_sum).
    assert seen and all(flag == (threads > 1) for flag in seen)
    expected = torch.zeros(7, 3, 5, dtype=torch.float64).index_add_(0, index, values**2)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(leaf.grad, 2 * values)
