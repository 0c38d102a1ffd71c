"""The attention kernels against each other and a float64 reference, auto's choice, and compiled blocks."""
import shutil

import pytest
import torch

from models import create_model
from models.latte import attention, attention_backend
from test_model import perturbed_tiny_model

SHAPES = {"spatial": (4, 3, 64, 32), "temporal": (48, 3, 8, 32)}  # (sequences, heads, L, head_dim)


def reference_attention(q, k, v):
    weights = (q.double() @ k.double().transpose(-1, -2)) / q.shape[-1] ** 0.5
    return torch.softmax(weights, dim=-1) @ v.double()


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("where", SHAPES)
def test_kernels_match_reference_and_each_other(where, dtype, tolerance):
    torch.manual_seed(0)
    q, k, v = (torch.randn(SHAPES[where], dtype=dtype, requires_grad=True) for _ in range(3))
    grad = torch.randn(SHAPES[where], dtype=dtype)
    expected = reference_attention(q, k, v)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad.double())
    scale = expected.abs().max()
    for backend in ("sdpa", "matmul", "auto"):
        out = attention(q, k, v, backend)
        assert out.dtype == dtype
        grads = torch.autograd.grad(out, (q, k, v), grad)
        assert (out.double() - expected).abs().max() < tolerance * scale, backend
        for name, got, want in zip("qkv", grads, expected_grads):
            assert (got.double() - want).abs().max() < tolerance * want.abs().max(), (backend, name)


def test_auto_choice_by_device_dtype_and_length():
    long_cpu, short_cpu = torch.zeros(1, 1, 256, 64), torch.zeros(1, 1, 16, 64)
    assert attention_backend(long_cpu) == "sdpa"
    assert attention_backend(short_cpu) == "matmul"
    assert attention_backend(long_cpu.bfloat16()) == attention_backend(long_cpu.half()) == "matmul"
    assert attention_backend(torch.zeros(1, 1, 16, 64, device="meta")) == "sdpa"  # any non-CPU device
    assert attention_backend(long_cpu, "matmul") == "matmul"
    with pytest.raises(ValueError, match="attention backend 'flash'"):
        create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3, attention="flash")


def test_models_with_each_kernel_agree_in_fp32_and_bf16():
    models = {backend: perturbed_tiny_model(attention=backend) for backend in ("sdpa", "matmul")}
    x, t = torch.randn(2, 4, 3, 16, 16), torch.randint(0, 1000, (2, 4))
    outputs = {}
    for backend, model in models.items():
        out = model(x, t)
        out.square().mean().backward()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs[backend] = out, model(x, t), [p.grad for p in model.parameters() if p.requires_grad]
    (fp32_a, bf16_a, grads_a), (fp32_b, bf16_b, grads_b) = outputs.values()
    torch.testing.assert_close(fp32_a, fp32_b, atol=1e-5, rtol=1e-4)
    for got, want in zip(grads_a, grads_b):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4)
    assert (bf16_a.float() - bf16_b.float()).abs().max() < 0.02 * fp32_a.abs().max()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_blocks_match_eager_and_do_not_recompile_per_step():
    """Per-frame timesteps, fewer frames than the window and a new batch size compile a bounded number of graphs:
    replaying the same mix of shapes a second time compiles nothing."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    eager, compiled = perturbed_tiny_model().train(), perturbed_tiny_model().train().compile_blocks()
    compiled.load_state_dict(eager.state_dict())

    def train_step(model, x, t):
        out = model(x, t)
        out.square().mean().backward()
        return out

    shapes = [(2, 4), (2, 4), (2, 3), (3, 2), (1, 4), (2, 1)]  # (batch, frames): next_frame and long's last window
    for replay in range(2):
        if replay:
            graphs = counters["stats"]["unique_graphs"]
        for batch, frames in shapes:
            x, t = torch.randn(batch, frames, 3, 16, 16), torch.randint(0, 1000, (batch, frames))
            eager.zero_grad()
            compiled.zero_grad()
            torch.testing.assert_close(train_step(compiled, x, t), train_step(eager, x, t), atol=1e-4, rtol=1e-4)
            for got, want in zip(compiled.parameters(), eager.parameters()):
                if want.grad is not None:
                    torch.testing.assert_close(got.grad, want.grad, atol=1e-5, rtol=1e-3)
            with torch.no_grad():
                torch.testing.assert_close(compiled.eval()(x, t), eager.eval()(x, t), atol=1e-4, rtol=1e-4)
            compiled.train()
            eager.train()
    assert counters["stats"]["unique_graphs"] == graphs
    # spatial and temporal blocks, train and eval: a graph each, then one dynamic-shape recompile each (a graph
    # per static shape would make 20)
    assert graphs <= 8
    assert list(compiled.state_dict()) == list(eager.state_dict())
