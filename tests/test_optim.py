"""The optimizer ``build_optimizer`` makes: multi-tensor (foreach) updates, chosen for speed on the CPU, must
move the weights exactly as PyTorch's one-tensor-at-a-time loop does, for both of train.optimizer's choices."""
from __future__ import annotations

import copy

import pytest
import torch

from model_fixtures import config
from rosetta.modeling import build_model
from rosetta.training.optim import build_optimizer
from rosetta_infer.charset import Charset


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_the_optimizer_steps_exactly_as_the_single_tensor_loop(optimizer):
    cfg = config(f"train.optimizer={optimizer}")
    torch.manual_seed(0)
    model = build_model(cfg.model, Charset.from_config(cfg.charset).num_classes)
    initial, reference = copy.deepcopy(model), copy.deepcopy(model)
    fast, slow = build_optimizer(cfg, model), build_optimizer(cfg, reference)
    assert all(group["foreach"] for group in fast.param_groups)
    for group in slow.param_groups:
        group["foreach"] = False
    generator = torch.Generator().manual_seed(1)
    for step in range(12):
        for a, b in zip(model.parameters(), reference.parameters()):
            a.grad = torch.randn(a.shape, generator=generator) * (10.0 if step % 2 else 0.1)
            b.grad = a.grad.clone()
        for net, opt in ((model, fast), (reference, slow)):
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
    for (name, a), b, c in zip(model.named_parameters(), reference.parameters(), initial.parameters()):
        assert torch.equal(a, b), name
        assert not torch.equal(a, c), name  # every tensor moved
