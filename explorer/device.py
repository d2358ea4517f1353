"""Pick the torch device that a model runs on, with one rule for every model family.

``"auto"`` means the first CUDA GPU when torch sees one, else the CPU. Explicit
choices are checked before any model is built, so that a typo or a missing GPU
fails at once with a message instead of deep inside a model's ``.to(device)``.
"""

from __future__ import annotations

import re

from explorer.errors import DeviceError

__all__ = ["DEVICE_CHOICES", "resolve_device"]

#: The forms a device string may take (``N`` is a CUDA device index).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(device: str = "auto") -> str:
    """Return a concrete torch device string: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``"auto"`` gives ``"cuda"`` when ``torch.cuda.is_available()``, else ``"cpu"``.
    Raises :class:`~explorer.errors.DeviceError` for anything else than the forms
    in :data:`DEVICE_CHOICES`, for a CUDA device when torch sees no CUDA, and for
    a CUDA index beyond the number of visible GPUs.
    """
    if not isinstance(device, str):
        raise DeviceError(f"device must be a string, one of {', '.join(DEVICE_CHOICES)}")
    text = device.strip().lower()
    if text == "cpu":
        return "cpu"
    # torch is imported here, not at module level: the CLI imports this module
    # for argument checking and should not pay torch's start-up time for it.
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    match = _CUDA.match(text)
    if match is None:
        raise DeviceError(f"unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)}")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {device!r} was requested but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
            "use device='cpu' or 'auto', or install a CUDA build of torch"
        )
    if match.group(1) is not None:
        index, count = int(match.group(1)), torch.cuda.device_count()
        if index >= count:
            raise DeviceError(
                f"device {device!r} does not exist: torch sees {count} CUDA "
                f"device(s), cuda:0 to cuda:{count - 1}"
            )
    return text
