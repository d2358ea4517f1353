"""Run a network through ``torch.compile`` where that works, else eagerly.

The PaiNN message passing of our models is a chain of broadcast products and sums over
(edges, 3, F) tensors: memory-bound on a CPU, and exactly what inductor fuses into a few
loops. Compiling costs about a minute up front (then cached on disk by torch) and needs
a C++ compiler; a machine without one must still train and simulate, so a compile
failure falls back to the eager module with a log line instead of stopping the job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from explorer.nn import painn

__all__ = ["CompiledOrEager", "maybe_compile"]


class CompiledOrEager:
    """Callable that forwards to ``torch.compile(module)`` until compiling fails once.

    ``module`` may also be a plain function or bound method (e.g. a model's
    ``current_geometry``): it is compiled and called the same way.

    Only compiler failures (``torch._dynamo.exc.TorchDynamoException``: no C++ compiler,
    an unsupported op) switch to eager mode; errors raised by the model itself (unknown
    elements, bad shapes) propagate unchanged, compiled or not.

    Attributes:
        module: the eager module or function (parameters are shared with the compiled one).
        compiled: whether calls still go through the compiled module.
    """

    def __init__(
        self, module: nn.Module | Callable[..., Any], log: Callable[[str], None] | None = None
    ) -> None:
        self.module = module
        self._compiled: Callable[..., Any] | None = torch.compile(module, dynamic=True)
        self._log = log

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.module(*args, **kwargs)
        painn.PARALLEL_CPU_SCATTER = torch.get_num_threads() > 1  # painn.scatter_sum
        try:
            return self._compiled(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as exc:
            self._compiled = None
            if self._log is not None:
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                self._log(f"torch.compile failed ({type(exc).__name__}: {reason}); eager mode")
            return self.module(*args, **kwargs)


def maybe_compile(
    module: nn.Module | Callable[..., Any], enabled: bool, log: Callable[[str], None] | None = None
) -> Callable[..., Any]:
    """``CompiledOrEager(module)`` when ``enabled``, else the module (or function) itself."""
    return CompiledOrEager(module, log) if enabled else module
