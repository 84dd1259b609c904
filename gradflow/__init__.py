"""gradflow: gradient-flow dynamics of two-layer networks and adversarial robustness.

One obvious entry point per job:

- data and models: ``make_subclass_data``, ``load_mnist``, ``ModelConfig``, ``init_params``,
  ``loss_and_grad`` (numpy), ``TwoLayerNet`` (torch);
- the exact gradient flow: ``simulate`` (and the reduced alignment flow ``find_extremal_vectors``);
- theory: ``gradflow.theory`` (ideal classifiers, closed-form and exact radii, sup-distance);
- real training: ``train``, ``train_ensemble``;
- robustness: ``attack_radius``, ``robust_accuracy_curve``, ``check_gradient_masking``;
- alignment metrics: ``Trajectory``, ``summarize_alignment``;
- studies and sweeps: ``run_study``, ``run_sweep``; figures live in ``gradflow.plots``
  (not imported here, so ``import gradflow`` never loads matplotlib).
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import (
    _malloc,  # noqa: F401  (first: fixes glibc's mmap threshold, see its docstring)
    theory,
)
from .activations import Activation, get_activation
from .activations import available as available_activations
from .attacks import (
    FGSM,
    PGD,
    MinNormL2,
    RaySearchL2,
    attack_radius,
    check_gradient_masking,
    fgsm_hook,
    pgd_hook,
    reference_pgd,
    robust_accuracy_curve,
)
from .backend import (
    MLP,
    EnsembleMember,
    SmallCNN,
    TrainConfig,
    TrainResult,
    make_two_layer,
    resolve_device,
    train,
    train_ensemble,
)
from .config import DataConfig, InitConfig, ModelConfig, config_hash
from .data import SubclassData, make_centres, make_subclass_data
from .dynamics import (
    SOLVERS,
    Solution,
    Stop,
    find_extremal_vectors,
    predicted_alignment_time,
    reduced_flow,
    register_solver,
    simulate,
)
from .init import init_params
from .metrics import (
    Trajectory,
    alignment_end,
    dominant_neurons,
    neuron_metrics,
    summarize_alignment,
)
from .mnist import load_mnist
from .model import TwoLayerParams, forward, hidden, loss, loss_and_grad
from .studies import run_study
from .sweep import run_sweep
from .theory import (
    bayes_classifier,
    exact_radius,
    ideal_F,
    ideal_Fp,
    radius_ceiling,
    radius_F,
    radius_Fp,
    sup_distance,
)
from .torch_model import (
    TwoLayerNet,
    export_reference_checkpoint,
    from_torch,
    load_reference_checkpoint,
    to_torch,
)

__all__ = [
    "__version__", "theory",
    # foundation
    "Activation", "available_activations", "get_activation",
    "DataConfig", "InitConfig", "ModelConfig", "config_hash",
    "SubclassData", "make_centres", "make_subclass_data", "load_mnist",
    "init_params", "TwoLayerParams", "forward", "hidden", "loss", "loss_and_grad",
    "TwoLayerNet", "export_reference_checkpoint", "from_torch", "load_reference_checkpoint",
    "to_torch",
    # gradient flow
    "simulate", "Solution", "Stop", "SOLVERS", "register_solver",
    "find_extremal_vectors", "predicted_alignment_time", "reduced_flow",
    # theory
    "ideal_F", "ideal_Fp", "bayes_classifier", "exact_radius", "sup_distance",
    "radius_F", "radius_Fp", "radius_ceiling",
    # torch backend
    "train", "TrainConfig", "TrainResult", "train_ensemble", "EnsembleMember",
    "MLP", "SmallCNN", "make_two_layer", "resolve_device",
    # robustness
    "attack_radius", "robust_accuracy_curve", "check_gradient_masking", "reference_pgd",
    "PGD", "FGSM", "MinNormL2", "RaySearchL2", "fgsm_hook", "pgd_hook",
    # metrics
    "Trajectory", "summarize_alignment", "neuron_metrics", "alignment_end", "dominant_neurons",
    # studies
    "run_study", "run_sweep",
]
