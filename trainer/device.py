"""Where torch models run: the one place CUDA is detected.

``pick_device("auto")`` gives CUDA when torch sees a GPU and the CPU otherwise. Asking for
``"cuda"`` on a machine without one warns and falls back to the CPU: a training run never
crashes because the GPU it was configured for is missing.
"""
from __future__ import annotations

import warnings


def pick_device(preference: str = "auto"):
    """Return a ``torch.device`` for ``preference`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``).

    >>> pick_device("cpu").type
    'cpu'
    """
    import torch

    pref = (preference or "auto").lower()
    if pref == "cpu":
        return torch.device("cpu")
    try:
        available = torch.cuda.is_available()
    except Exception as exc:  # noqa: BLE001 - a broken driver must not stop training
        warnings.warn(f"CUDA probe failed ({exc}); training on the CPU", RuntimeWarning, stacklevel=2)
        available = False
    if pref == "auto":
        return torch.device("cuda" if available else "cpu")
    if pref.startswith("cuda"):
        if available:
            return torch.device(pref)
        warnings.warn(f"device {preference!r} asked for but CUDA is not available; training on the CPU",
                      RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    raise ValueError(f"unknown device {preference!r}: use auto, cpu, cuda or cuda:N")


def describe(device) -> str:
    """A short human name for a device, for logs and benchmark tables."""
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
