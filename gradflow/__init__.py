"""gradflow: gradient-flow dynamics of two-layer networks and adversarial robustness."""
from __future__ import annotations

__version__ = "0.1.0"

from .activations import Activation, get_activation
from .activations import available as available_activations
from .config import DataConfig, InitConfig, ModelConfig, config_hash
from .data import SubclassData, make_centres, make_subclass_data
from .init import init_params
from .model import TwoLayerParams, forward, hidden, loss, loss_and_grad
from .torch_model import (
    TwoLayerNet,
    export_reference_checkpoint,
    from_torch,
    load_reference_checkpoint,
    to_torch,
)

__all__ = [
    "Activation", "available_activations", "get_activation",
    "DataConfig", "InitConfig", "ModelConfig", "config_hash",
    "SubclassData", "make_centres", "make_subclass_data",
    "init_params",
    "TwoLayerParams", "forward", "hidden", "loss", "loss_and_grad",
    "TwoLayerNet", "export_reference_checkpoint", "from_torch", "load_reference_checkpoint",
    "to_torch",
]
