"""Networks for the torch backend beyond the two-layer net.

* ``TwoLayerNet`` (re-exported from ``gradflow.torch_model``) is the network of
  the theory; ``make_two_layer`` builds one from the same ``InitConfig`` the ODE
  engine uses, so both start from identical parameters.
* ``MLP``: x -> a_1(W_1 x + b_1) -> ... -> a_L(W_L h + b_L) -> W_out h + b_out,
  with one activation spec per hidden layer (e.g. capped ReLU on layer 2 only).
* ``SmallCNN``: two 5x5 conv + activation + 2x2 max-pool blocks, one dense
  hidden layer, a linear head; the activation is pluggable (smooth-activation
  study).

MLP and CNN activations are applied elementwise, phi(z); the weight-norm
division of pReLU only makes sense inside the two-layer net, so 'prelu' with
p != 1 is refused there (use 'relu_p' for relu(z)^p).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .._validate import check_int
from ..activations import get_activation
from ..config import InitConfig, ModelConfig
from ..init import init_params
from ..torch_model import TwoLayerNet, to_torch
from .device import resolve_device, resolve_dtype

__all__ = ["MLP", "SmallCNN", "TwoLayerNet", "make_two_layer", "elementwise_activation"]


def make_two_layer(model: ModelConfig, init: InitConfig, D: int, *, centres=None,
                   dtype: str | torch.dtype = "float64", device: str = "cpu") -> TwoLayerNet:
    """A ``TwoLayerNet`` holding ``init_params(model, init, D)`` (drawn in float64, then cast)."""
    params = init_params(model, init, D, centres=centres)
    return to_torch(params, model, dtype=resolve_dtype(dtype), device=resolve_device(device))


def elementwise_activation(spec: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Torch function z -> phi(z) for an activation spec such as 'capped_relu:beta=0.1'."""
    act = get_activation(spec)
    if act.w_power != 0:
        raise ValueError(f"`activation` {spec!r} divides by ||w||^{act.w_power:g}, which only the "
                         "two-layer net supports; use 'relu_p:p=...' for an elementwise relu^p")
    return act.torch_fn


class _Act(nn.Module):
    """Module wrapper so activations show up in ``print(model)`` with their spec."""

    def __init__(self, spec: str):
        super().__init__()
        self.spec = spec
        self.fn = elementwise_activation(spec)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)

    def extra_repr(self) -> str:
        return self.spec


class MLP(nn.Module):
    """Fully connected net with per-layer activations.

    h_0 = x (flattened), h_l = a_l(W_l h_{l-1} + b_l) for l = 1..L, f = W_out h_L + b_out.
    ``widths`` and ``activations`` have one entry per hidden layer (any widths:
    bottleneck (512, 32, 512) or reversed bottleneck (32, 512, 32)). Output
    shape (n,) when ``n_outputs`` is 1, else (n, C) logits.
    """

    def __init__(self, in_dim: int, widths: Sequence[int], activations: Sequence[str] | str,
                 n_outputs: int = 10, bias: bool = True, dtype=torch.float32, device=None):
        super().__init__()
        check_int("in_dim", in_dim, 1)
        widths = list(widths)
        if not widths:
            raise ValueError("`widths` must list at least one hidden layer width")
        for i, w in enumerate(widths):
            check_int(f"widths[{i}]", w, 1)
        if isinstance(activations, str):
            activations = [activations] * len(widths)
        activations = list(activations)
        if len(activations) != len(widths):
            raise ValueError(f"`activations` must have one entry per hidden layer: `widths` has "
                             f"{len(widths)}, `activations` has {len(activations)}")
        check_int("n_outputs", n_outputs, 1)
        if not isinstance(bias, bool):
            raise ValueError(f"`bias` must be True or False, got {bias!r}")
        kw = dict(dtype=resolve_dtype(dtype), device=device)
        dims = [in_dim] + widths
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias, **kw) for a, b in zip(dims, widths))
        self.acts = nn.ModuleList(_Act(s) for s in activations)
        self.head = nn.Linear(widths[-1], n_outputs, bias=bias, **kw)
        self.n_outputs = n_outputs

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-activation features [h_1, ..., h_L] (hidden-layer distance studies)."""
        h = x.reshape(x.shape[0], -1)
        if h.shape[1] != self.layers[0].in_features:
            raise ValueError(f"`x` must have {self.layers[0].in_features} features, got "
                             f"{h.shape[1]}")
        out = []
        for lin, act in zip(self.layers, self.acts):
            h = act(lin(h))
            out.append(h)
        return out

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer h_L, shape (n, widths[-1])."""
        return self.features(x)[-1]

    def weight_matrix(self) -> torch.Tensor:
        """First-layer weights W_1 (widths[0], in_dim): the W of the stable-rank metric."""
        return self.layers[0].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(self.hidden(x))
        return f.squeeze(-1) if self.n_outputs == 1 else f


class SmallCNN(nn.Module):
    """conv5x5(c1)-a-pool2 -> conv5x5(c2)-a-pool2 -> dense(hidden)-a -> linear(C).

    For 28x28 MNIST the flattened size is c2 * 7 * 7. ``activation`` is any
    elementwise spec ('relu', 'softplus', 'param_softplus:a=10', 'silu', 'gelu',
    'elu', 'relu_softplus_grad', ...).
    """

    def __init__(self, activation: str = "relu", in_channels: int = 1, n_classes: int = 10,
                 channels: tuple[int, int] = (32, 64), hidden: int = 128, image_size: int = 28,
                 dtype=torch.float32, device=None):
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("n_classes", n_classes, 2)
        check_int("hidden", hidden, 1)
        check_int("image_size", image_size, 4)
        if not isinstance(channels, (tuple, list)) or len(channels) != 2:
            raise ValueError(f"`channels` must be a pair (c1, c2) of positive integers, got "
                             f"{channels!r}")
        c1, c2 = (check_int("channels", c, 1) for c in channels)
        kw = dict(dtype=resolve_dtype(dtype), device=device)
        self.act = _Act(activation)
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2, **kw)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, **kw)
        side = image_size // 4
        self.fc = nn.Linear(c2 * side * side, hidden, **kw)
        self.head = nn.Linear(hidden, n_classes, **kw)
        self.in_channels, self.image_size, self.n_classes = in_channels, image_size, n_classes

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features a(fc(.)), shape (n, hidden)."""
        x = x.reshape(x.shape[0], self.in_channels, self.image_size, self.image_size)
        x = nn.functional.max_pool2d(self.act(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(self.act(self.conv2(x)), 2)
        return self.act(self.fc(x.flatten(1)))

    def weight_matrix(self) -> torch.Tensor:
        """Dense hidden-layer weights (hidden, c2*7*7): the W of the stable-rank metric."""
        return self.fc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x))


