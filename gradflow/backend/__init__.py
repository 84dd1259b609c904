"""PyTorch backend: real training (GD, SGD, Adam) on CPU/GPU, batched ensembles.

Entry points: ``train`` (any model), ``train_ensemble`` (R two-layer nets in
one batched computation), ``TrainConfig``, the models ``MLP`` and ``SmallCNN``
(``TwoLayerNet`` comes from ``gradflow.torch_model``) and ``resolve_device``.
"""
from __future__ import annotations

from .device import resolve_device, resolve_dtype, torch_threads
from .ensemble import (
    PAPER_TRAIN,
    BatchedTwoLayer,
    EnsembleMember,
    EnsembleResult,
    paper_members,
    paper_scale_ensemble,
    train_ensemble,
    train_member,
)
from .metrics import stable_rank_torch
from .models import MLP, SmallCNN, TwoLayerNet, elementwise_activation, make_two_layer
from .train import (
    Snapshots,
    TrainConfig,
    TrainResult,
    evaluate,
    make_optimizer,
    snapshot_steps,
    train,
)

__all__ = [
    "train", "TrainConfig", "TrainResult", "Snapshots", "evaluate", "make_optimizer",
    "snapshot_steps",
    "train_ensemble", "train_member", "EnsembleMember", "EnsembleResult", "BatchedTwoLayer",
    "paper_members", "paper_scale_ensemble", "PAPER_TRAIN",
    "MLP", "SmallCNN", "TwoLayerNet", "make_two_layer", "elementwise_activation",
    "resolve_device", "resolve_dtype", "stable_rank_torch", "torch_threads",
]
