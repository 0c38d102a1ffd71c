"""Latte backbone with per-frame adaLN-Zero: sizes, equivalence to a naive Latte forward, checkpoints."""
import json
import math
import pickle
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from safetensors.torch import save_file

from models import create_model
from models.checkpoint import load_pretrained, read_state_dict, to_model_keys

REFERENCE_FILE = Path(__file__).resolve().parents[2] / "shared/reference/official_state_dicts.json"
REFERENCE = json.loads(REFERENCE_FILE.read_text()) if REFERENCE_FILE.exists() else {}


@pytest.mark.parametrize("name, trainable, total", [
    ("Latte-S/2", 32_480_672, 32_585_120),
    ("Latte-B/2", 129_547_040, 129_755_936),
    ("Latte-L/2", 456_815_648, 457_094_176),
    ("Latte-XL/2", 673_681_568, 673_994_912),
])
def test_parameter_counts_match_latte_and_paper(name, trainable, total):
    with torch.device("meta"):
        model = create_model(name, input_size=32, num_frames=16, in_channels=4, learn_sigma=True)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    assert sum(p.numel() for p in model.parameters()) == total


def test_readme_parameter_table_matches_the_code():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = re.findall(r"^\| `(Latte-\w+/\d)` \| [^|]+ \| ([\d,]+) \| ([\d,]+) \| ([\d.]+)M \|$", readme, flags=re.M)
    assert [row[0] for row in rows] == ["Latte-S/2", "Latte-B/2", "Latte-L/2", "Latte-XL/2"]
    for name, trainable, total, paper in rows:
        with torch.device("meta"):
            model = create_model(name, input_size=32, num_frames=16, in_channels=4, learn_sigma=True)
        fixed = model.pos_embed.numel() + model.temp_embed.numel()
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == int(trainable.replace(",", ""))
        assert sum(p.numel() for p in model.parameters()) == int(total.replace(",", "")) == int(
            trainable.replace(",", "")) + fixed
        # the paper counts the fixed tables; XL/2's total is 673.99M against the paper's 674.00M
        assert int(total.replace(",", "")) / 1e6 == pytest.approx(float(paper), abs=0.0055)
        assert int(trainable.replace(",", "")) / 1e6 < float(paper) - 0.1


def perturbed_tiny_model(num_classes=0, num_frames=4, seed=0, attention="auto"):
    """A tiny model whose zero-initialised adaLN / final layers are given random values, so outputs are nonzero."""
    torch.manual_seed(seed)
    model = create_model("Latte-T/4", input_size=16, num_frames=num_frames, in_channels=3, num_classes=num_classes,
                         attention=attention)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def naive_latte_forward(model, x, t, y=None):
    """Latte's released algorithm written independently: (b f) t d tokens, the timestep embedding repeated to every
    token (B*T*N modulation vectors in temporal blocks), explicit softmax attention and layer norm."""
    B, N = x.shape[:2]
    D, heads = model.hidden_size, model.spatial_blocks[0].attn.num_heads
    tokens = model.x_embedder.proj(rearrange(x, "b f c h w -> (b f) c h w"))
    tokens = rearrange(tokens, "bf d h w -> bf (h w) d") + model.pos_embed
    T = tokens.shape[1]
    if t.ndim == 1:
        t = repeat(t, "b -> b f", f=N)
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[..., None] * freqs
    t_emb = model.t_embedder.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))  # (B, N, D)
    if y is not None:
        t_emb = t_emb + model.y_embedder.embedding_table(y)[:, None]
    cond_spatial = repeat(t_emb, "b f d -> (b f) d")  # one vector per frame sequence
    cond_temporal = repeat(t_emb, "b f d -> (b t) f d", t=T)  # one vector per token of every temporal sequence

    def layer_norm(h):
        mean = h.mean(-1, keepdim=True)
        var = ((h - mean) ** 2).mean(-1, keepdim=True)
        return (h - mean) / torch.sqrt(var + 1e-6)

    def block(blk, h, c):  # h: (S, L, D); c: (S, D) or (S, L, D)
        mod = blk.adaLN_modulation[1](F.silu(c))
        if mod.ndim == 2:
            mod = mod[:, None]
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        a = layer_norm(h) * (1 + scale1) + shift1
        q, k, v = rearrange(blk.attn.qkv(a), "s l (three h d) -> three s h l d", three=3, h=heads)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // heads), dim=-1)
        h = h + gate1 * blk.attn.proj(rearrange(weights @ v, "s h l d -> s l (h d)"))
        m = layer_norm(h) * (1 + scale2) + shift2
        return h + gate2 * blk.mlp.fc2(F.gelu(blk.mlp.fc1(m), approximate="tanh"))

    h = tokens
    for i, (spatial, temporal) in enumerate(zip(model.spatial_blocks, model.temporal_blocks)):
        h = block(spatial, h, cond_spatial)
        h = rearrange(h, "(b f) t d -> (b t) f d", b=B)
        if i == 0:
            h = h + model.temp_embed[:, :N]
        h = block(temporal, h, cond_temporal)
        h = rearrange(h, "(b t) f d -> (b f) t d", b=B)
    shift, scale = model.final_layer.adaLN_modulation[1](F.silu(cond_spatial))[:, None].chunk(2, dim=-1)
    h = model.final_layer.linear(layer_norm(h) * (1 + scale) + shift)
    p, grid = model.patch_size, model.input_size // model.patch_size
    out = rearrange(h, "(b f) (gh gw) (p q c) -> b f c (gh p) (gw q)", b=B, gh=grid, gw=grid, p=p, q=p)
    return out


@pytest.mark.parametrize("attention", ["sdpa", "matmul"])
def test_uniform_timesteps_equal_scalar_latte(attention):
    model = perturbed_tiny_model(attention=attention)
    x = torch.randn(2, 4, 3, 16, 16)
    t_scalar = torch.tensor([17, 803])
    with torch.no_grad():
        ours_vector = model(x, t_scalar[:, None].expand(2, 4))
        ours_scalar = model(x, t_scalar)
        reference = naive_latte_forward(model, x, t_scalar)
    assert ours_vector.abs().max() > 1e-2
    torch.testing.assert_close(ours_vector, reference, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours_scalar, ours_vector, atol=0, rtol=0)


@pytest.mark.parametrize("attention", ["sdpa", "matmul"])
def test_per_frame_timesteps_equal_naive_per_token_modulation(attention):
    model = perturbed_tiny_model(num_classes=5, attention=attention)
    x = torch.randn(2, 4, 3, 16, 16)
    t = torch.tensor([[0, 250, 999, 3], [40, 40, 700, 120]])
    y = torch.tensor([1, 4])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, y), naive_latte_forward(model, x, t, y), atol=1e-4, rtol=1e-4)


def test_changing_one_frames_timestep_changes_only_its_modulation():
    model = perturbed_tiny_model()
    modulations = []
    hooks = [m.adaLN_modulation.register_forward_hook(lambda mod, inp, out: modulations.append(out))
             for m in [*model.spatial_blocks, *model.temporal_blocks, model.final_layer]]
    x = torch.randn(1, 4, 3, 16, 16)
    t = torch.tensor([[100, 200, 300, 400]])
    t_changed = t.clone()
    t_changed[0, 2] = 900
    with torch.no_grad():
        model(x, t)
        before = list(modulations)
        modulations.clear()
        model(x, t_changed)
    for hook in hooks:
        hook.remove()
    assert len(before) == len(modulations) == len(hooks) == 7  # 3 spatial + 3 temporal blocks + final layer
    for old, new in zip(before, modulations):
        assert old.shape[:2] == (1, 4)  # computed once per frame: (B, N, k*D), never per token
        changed = (old - new).abs().amax(dim=-1)[0]
        assert changed[2] > 0 and torch.all(changed[[0, 1, 3]] == 0)


def test_fresh_model_outputs_zero_and_shapes():
    model = create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3, learn_sigma=True)
    out = model(torch.randn(2, 3, 3, 16, 16), torch.tensor([5, 6]))  # fewer frames than built for is allowed
    assert out.shape == (2, 3, 6, 16, 16) and torch.all(out == 0)
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(2, 3\)"):
        model(torch.randn(2, 3, 3, 16, 16), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown model"):
        create_model("Latte-M/2")


def test_cfg_and_label_dropout():
    model = perturbed_tiny_model(num_classes=5)
    x = torch.randn(1, 4, 3, 16, 16)
    t = torch.tensor([300])
    with torch.no_grad():
        cond = model(x, t, torch.tensor([2]))
        uncond = model(x, t, torch.tensor([5]))
        guided = model.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), torch.tensor([2, 5]), 4.0)
    torch.testing.assert_close(guided[0, :, :3], uncond[0, :, :3] + 4.0 * (cond[0, :, :3] - uncond[0, :, :3]))
    torch.testing.assert_close(guided[0, :, 3:], cond[0, :, 3:])
    model.train()
    torch.manual_seed(0)
    labels = torch.full((4000,), 3)
    dropped = (model.y_embedder(labels, train=True) == model.y_embedder.embedding_table.weight[5]).all(-1)
    assert abs(dropped.float().mean().item() - 0.1) < 4 * math.sqrt(0.09 / 4000)


def test_bf16_autocast_and_gradient_checkpointing():
    model = perturbed_tiny_model().train()
    x, t = torch.randn(2, 4, 3, 16, 16), torch.randint(0, 1000, (2, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = model(x, t)
    out_fp32 = model(x, t)
    assert out_bf16.dtype == torch.bfloat16
    assert (out_bf16.float() - out_fp32).abs().max() < 0.05 * out_fp32.abs().max()

    out_fp32.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    model.gradient_checkpointing = True
    model(x, t).square().mean().backward()
    for g, p in zip(grads, [p for p in model.parameters() if p.requires_grad]):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-5)


def random_reference_state(entry):
    generator = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=generator) for k, shape in entry["state_dict"].items()}


def to_latte_keys(state):
    """Inverse renaming, written independently: ours -> released Latte's interleaved `blocks.k`."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in ("spatial_blocks", "temporal_blocks"):
            index = 2 * int(parts[1]) + (parts[0] == "temporal_blocks")
            key = ".".join(["blocks", str(index), *parts[2:]])
        out[key] = value
    return out


@pytest.mark.skipif(not REFERENCE, reason="shared/reference not beside the checkout")
@pytest.mark.parametrize("entry_name", ["latte_S2_uncond", "fvdm_S2_uncond"])
def test_released_checkpoints_round_trip(tmp_path, entry_name):
    entry = REFERENCE[entry_name]
    reference = random_reference_state(entry)
    model = create_model("Latte-S/2", input_size=32, num_frames=16, in_channels=4, learn_sigma=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == entry["trainable_params"]
    wrapped = {"ema": {f"module.{k}": v for k, v in reference.items()}, "model": {}, "opt": {}}
    torch.save(wrapped, tmp_path / "ckpt.pt")
    load_pretrained(model, tmp_path / "ckpt.pt")
    ours = model.state_dict()
    latte_named = to_latte_keys(ours)
    for key, value in reference.items():
        if key in ("pos_embed", "temp_embed"):
            continue  # fixed sin-cos tables are rebuilt by the model
        latte_key = re.sub(r"^blocks_spatial\.(\d+)", lambda m: f"blocks.{2 * int(m.group(1))}", key)
        latte_key = re.sub(r"^blocks_temp\.(\d+)", lambda m: f"blocks.{2 * int(m.group(1)) + 1}", latte_key)
        assert torch.equal(latte_named[latte_key], value), key

    save_file({f"_orig_mod.{k}": v.contiguous() for k, v in reference.items()}, tmp_path / "ckpt.safetensors")
    model_b = create_model("Latte-S/2", input_size=32, num_frames=16, in_channels=4)
    load_pretrained(model_b, tmp_path / "ckpt.safetensors")
    for key, value in model_b.state_dict().items():
        assert torch.equal(value, ours[key]), key


@pytest.mark.skipif(not REFERENCE, reason="shared/reference not beside the checkout")
@pytest.mark.parametrize("entry_name", ["latte_XL2_ucf101", "fvdm_XL2_ucf101"])
def test_released_xl_key_names_and_shapes_map_onto_ours(entry_name):
    entry = REFERENCE[entry_name]
    kwargs = entry["constructor_kwargs"]
    with torch.device("meta"):
        model = create_model("Latte-XL/2", input_size=kwargs["input_size"], num_frames=kwargs["num_frames"],
                             num_classes=kwargs.get("num_classes", 0))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped = {k: tuple(v) for k, v in to_model_keys(entry["state_dict"]).items()}
    assert mapped == ours
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == entry["trainable_params"]


def test_mismatch_names_keys_and_unpickling_is_refused(tmp_path):
    model = create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3)
    state = model.state_dict()
    state.pop("final_layer.linear.bias")
    state["spatial_blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError) as error:
        load_pretrained(model, tmp_path / "bad.pt")
    message = str(error.value)
    assert "final_layer.linear.bias" in message and "extra.weight" in message
    assert "spatial_blocks.0.attn.qkv.weight: checkpoint (3, 3)" in message

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(RuntimeError, match=f"checkpoint {tmp_path / 'evil.pt'} contains pickled objects other than "
                                           r"tensors \(.*print\); we refuse to unpickle them for safety"):
        read_state_dict(tmp_path / "evil.pt")


def test_mismatch_of_an_already_read_checkpoint_names_its_path_and_a_few_shapes(tmp_path):
    state = create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3).state_dict()
    model = create_model("Latte-S/4", input_size=16, num_frames=4, in_channels=3)
    with pytest.raises(RuntimeError) as error:
        load_pretrained(model, {"ema": state}, source_name=tmp_path / "run" / "0000100.pt")
    message = str(error.value)
    assert message.startswith(f"checkpoint {tmp_path / 'run' / '0000100.pt'} does not fit the model")
    assert re.search(r"shape mismatch in \d+ keys, e.g. \['x_embedder.proj.weight: checkpoint \(128, 3, 4, 4\) vs "
                     r"model \(384, 3, 4, 4\)'", message)
    shown = message.split("shape mismatch in ")[1].split("; ")[0]
    assert shown.count(" vs model ") == 5  # a few keys, not all of them
    assert re.search(r"missing from checkpoint: \d+ keys, e.g. \['spatial_blocks.3.", message)


def test_unreadable_checkpoints_name_the_file_and_never_suggest_full_unpickling(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"ema": {"w": torch.zeros(4)}}, good)
    save_file({"w": torch.zeros(4)}, str(tmp_path / "good.safetensors"))
    files = {
        "garbage.pt": b"not a torch file " * 8,
        "truncated.pt": good.read_bytes()[: good.stat().st_size // 2],
        "pickled.pt": pickle.dumps({"w": [1, 2, 3]}, protocol=2),  # a plain pickle, not torch.save's format
        "garbage.safetensors": b"\xff" * 64,
        "truncated.safetensors": (tmp_path / "good.safetensors").read_bytes()[:-8],
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(RuntimeError) as error:
            read_state_dict(path)
        message = str(error.value)
        assert message.startswith(f"checkpoint {path} is not a readable "), message
        assert "truncated" in message and "weights_only" not in message, message
        assert error.value.__suppress_context__  # torch's own advice stays out of the traceback too
