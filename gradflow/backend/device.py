"""Device and dtype selection for the torch backend.

``device='auto'`` picks CUDA when ``torch.cuda.is_available()`` and falls back
to the CPU otherwise, silently: the same script runs on a laptop and on a GPU
node. An explicit ``'cuda'`` without a usable GPU is an error, never a silent
fallback, because a user who asks for the GPU wants to know it is not there.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .._validate import check_choice

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_device_spec(device) -> str:
    """Validate the form of a device string ('auto', 'cpu', 'cuda' or 'cuda:N') without
    asking whether that device exists (a config may be written on a machine without it)."""
    if isinstance(device, torch.device):
        device = str(device)
    kind, sep, index = device.partition(":") if isinstance(device, str) else ("", "", "")
    if device not in ("auto", "cpu") and (kind != "cuda" or (sep and not index.isdigit())):
        raise ValueError(f"`device` must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for ``device`` ('auto', 'cpu', 'cuda' or 'cuda:N').

    'auto' -> cuda:0 when CUDA is available, else cpu. Raises ``ValueError``
    naming `device` for an unknown string or an unavailable CUDA device.
    """
    device = check_device_spec(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    index = device.partition(":")[2]
    if not torch.cuda.is_available():
        raise ValueError(f"`device`={device!r} was requested but CUDA is not available; "
                         "use device='auto' to fall back to the CPU")
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"`device`={device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Return the torch dtype for 'float32' / 'float64' (or a torch dtype of those)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"`dtype` must be one of 'float32', 'float64'; got {dtype}")
        return dtype
    return DTYPES[check_choice("dtype", dtype, tuple(DTYPES))]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op CPU threads, restoring the old count after.

    ``None`` or 0 leaves torch's setting alone. Small matrices run several times faster
    on one thread than with all cores contending (measured on a loaded 2-core machine).
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"`threads` must be an integer >= 0 (0: unchanged), got {n!r}")
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
