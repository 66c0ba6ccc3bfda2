"""Choosing the compute device: CUDA, then Apple MPS, then CPU, unless the user says otherwise."""

from __future__ import annotations

import torch

from .errors import DeepColorError


def resolve_device(name: str | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` are taken as asked."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeepColorError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeepColorError("device 'cuda' was asked for but PyTorch sees no CUDA GPU here; "
                             "use --device cpu, or install a CUDA build of PyTorch (see docs/troubleshooting.md).")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeepColorError("device 'mps' was asked for but Apple MPS is not available; use --device cpu.")
    return device


def autocast(device: torch.device):
    """Mixed precision (bfloat16) on CUDA, where it speeds the convolutions up; nothing elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last where it measured faster: on CUDA (its convolutions prefer it) and on the CPU (a
    training step of the default net 0.80 times the time with two threads, torch 2.13;
    benchmarks/probes/cpu_step_layout.py). Unmeasured elsewhere (MPS): the default layout."""
    return torch.channels_last if device.type in ("cuda", "cpu") else torch.contiguous_format
