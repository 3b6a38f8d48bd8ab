"""The Rosetta model: sizes pinned to PaddleOCR's, dynamic width, SE gate, head init, loss."""
import json
import math
from pathlib import Path

import pytest
import torch

from rosetta.config import config_from_dict
from rosetta.modeling import build_model, param_groups
from rosetta.modeling.backbones.depthwise import DepthwiseConv2d
from rosetta.modeling.backbones.rec_mobilenet_v3 import PaddleHardSigmoid, SEModule, make_divisible
from rosetta.modeling.losses.rec_ctc_loss import CTCLoss

ROOT = Path(__file__).resolve().parents[1]


def summary_json(rosetta_cli, *overrides):
    proc = rosetta_cli("summary", "--json", "-c", str(ROOT / "params.yaml"), *(a for o in overrides for a in ("-o", o)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_summary_resnet34_vd(rosetta_cli):
    s = summary_json(rosetta_cli, "model.backbone={name: ResNet, layers: 34}")
    assert s["backbone"] == "resnet34_vd"
    assert s["params"] == pytest.approx(21.3e6, rel=0.01)
    assert s["output_shape"] == [1, 25, 37]
    assert s["flops"] > 1e9


def test_summary_mobilenet_v3_large_half(rosetta_cli):
    s = summary_json(rosetta_cli, "model.backbone=mobilenet_v3", "model.backbone.model_name=large",
                     "model.backbone.scale=0.5")
    assert s["backbone_params"] == pytest.approx(0.78e6, rel=0.01)
    assert s["output_shape"] == [1, 25, 37]
    assert {"params", "backbone_params", "flops", "output_shape"} <= s.keys()


@pytest.mark.parametrize("overrides", [
    ["model.backbone=resnet34_vd"],
    ["model.backbone=mobilenet_v3"],
    ["model.backbone={name: MobileNetV3, model_name: small, scale: 0.35}"],
    ["model.backbone.scale=1.25"],
])
@pytest.mark.parametrize("width, steps", [(100, 25), (320, 80), (64, 16)])
def test_dynamic_width(overrides, width, steps):
    model = build_model(config_from_dict({}, overrides).model, 37).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, width))
    assert out.shape == (2, steps, 37)
    # eval mode returns probabilities
    assert torch.allclose(out.sum(-1), torch.ones(2, steps), atol=1e-5)


def test_train_mode_returns_logits():
    model = build_model(config_from_dict({}).model, 37).train()
    out = model(torch.randn(2, 3, 32, 100))
    assert not torch.allclose(out.sum(-1), torch.ones(2, 25))


def test_se_gate_uses_paddle_hardsigmoid_slope():
    gate = PaddleHardSigmoid()
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    # Paddle: clip(0.2 x + 0.5, 0, 1); torch's hardsigmoid would give x / 6 + 0.5.
    assert torch.allclose(gate(x), torch.tensor([0.0, 0.3, 0.5, 0.7, 0.9, 1.0]))
    assert not torch.allclose(gate(x), torch.nn.functional.hardsigmoid(x))
    assert isinstance(SEModule(16).gate, PaddleHardSigmoid)


def test_make_divisible():
    assert make_divisible(16 * 0.5) == 8
    assert make_divisible(960 * 0.5) == 480
    assert make_divisible(16 * 0.35) == 8
    assert make_divisible(72 * 0.35) == 24  # 25.2 -> 24, not below 0.9 x


def test_head_init_and_l2_groups():
    model = build_model(config_from_dict({}, ["model.backbone=resnet34_vd"]).model, 37)
    bound = 1 / math.sqrt(512)
    assert model.head.fc.weight.abs().max() <= bound and model.head.fc.bias.abs().max() <= bound
    groups = param_groups(model, 4e-4)
    assert groups[1]["weight_decay"] == 4e-4 and groups[0]["weight_decay"] == 0.0
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))


def test_ctc_loss_is_batch_mean_of_per_sample_loss():
    torch.manual_seed(0)
    logits = torch.randn(3, 25, 37)
    targets = torch.tensor([[1, 2, 0], [3, 0, 0], [4, 5, 6]])
    lengths = torch.tensor([2, 1, 3])
    loss = CTCLoss()(logits, targets, lengths)
    per = torch.nn.functional.ctc_loss(logits.log_softmax(2).transpose(0, 1), targets,
                                       torch.full((3,), 25), lengths, reduction="none")
    assert torch.allclose(loss, per.mean())
    # not torch's default 'mean' (which divides by target length first)
    default = torch.nn.functional.ctc_loss(logits.log_softmax(2).transpose(0, 1), targets,
                                           torch.full((3,), 25), lengths)
    assert not torch.allclose(loss, default)


@pytest.mark.parametrize("kernel,stride,height", [(5, 1, 2), (5, (2, 1), 4), (5, 1, 4), (5, (2, 1), 8), (5, 2, 7),
                                                  (3, 1, 2), (3, (2, 1), 2), (5, 1, 1), (3, 1, 9)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_depthwise_conv_gradients_match_conv2d(kernel, stride, height, channels_last):
    torch.manual_seed(0)
    ours = DepthwiseConv2d(16, kernel, stride=stride, padding=kernel // 2)
    plain = torch.nn.Conv2d(16, 16, kernel, stride=stride, padding=kernel // 2, groups=16, bias=False)
    plain.weight.data.copy_(ours.weight.data)
    x = torch.randn(3, 16, height, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    outs, grads = [], []
    for conv in (ours, plain):
        xi = x.clone().requires_grad_()
        y = conv(xi)
        y.backward(torch.cos(torch.arange(y.numel(), dtype=torch.float32)).reshape(y.shape))
        outs.append(y.detach())
        grads.append((xi.grad, conv.weight.grad))
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    assert ours.weight.grad.abs().sum() > 0


def test_mobilenet_depthwise_layers_train_on_kernel_rows_and_keep_conv2d_weights():
    model = build_model(config_from_dict({"model": {"backbone": "mobilenet_v3"}}).model, 37)
    depthwise = [m for m in model.modules() if isinstance(m, DepthwiseConv2d)]
    assert len(depthwise) == 15 and all(isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels
                                        for m in depthwise)
    for m in depthwise:  # checkpoints written with plain nn.Conv2d layers load as they are
        plain = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, groups=m.groups, bias=False)
        m.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 100)
    model.train()(x).sum().backward()
    assert all(m.weight.grad is not None for m in depthwise)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 25, 37)


def test_depthwise_conv_under_bf16_autocast_trains_like_conv2d():
    torch.manual_seed(0)
    ours = DepthwiseConv2d(8, 5, padding=2)
    x = torch.randn(2, 8, 2, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and ours.weight.grad.dtype == torch.float32 and x.grad is not None
