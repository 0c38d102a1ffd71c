"""Text conditioning: per-frame cross-attention in the spatial blocks, the learned null prompt, local text encoders."""
import shutil

import pytest
import torch
from einops import rearrange

from models import create_model
from models.text_encoder import TextEncoder, resolve_text_encoder_path

TEXT_DIM = 24


def tiny_text_model(text_dim=TEXT_DIM, attention="auto", seed=0, **kwargs):
    """A tiny text model whose zero-initialised layers (adaLN, final, cross-attention output) are made random."""
    torch.manual_seed(seed)
    model = create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3, text_dim=text_dim,
                         attention=attention, **kwargs)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def random_text(batch=2, frames=None, length=6, valid=(6, 3)):
    """Text tokens (B, [N,] L, D) and a right-padded mask with `valid` tokens per clip."""
    shape = (batch, length) if frames is None else (batch, frames, length)
    mask = torch.zeros(shape, dtype=torch.bool)
    for b, count in enumerate(valid):
        mask[b, ..., :count] = True
    return torch.randn(*shape, TEXT_DIM), mask


def naive_cross_attention(module, x, text, text_mask):
    """Frame by frame and head by head, with only the valid text tokens: x (B, N, T, D), text (B, N, L, D)."""
    batch, frames, _, dim = x.shape
    heads, head_dim = module.num_heads, dim // module.num_heads
    out = torch.zeros_like(x)
    for b in range(batch):
        for n in range(frames):
            keys = text[b, n][text_mask[b, n]]  # (valid, D)
            q = module.q(x[b, n])
            k, v = module.kv(keys).chunk(2, dim=-1)
            per_head = []
            for h in range(heads):
                part = slice(h * head_dim, (h + 1) * head_dim)
                weights = torch.softmax(q[:, part] @ k[:, part].T / head_dim**0.5, dim=-1)
                per_head.append(weights @ v[:, part])
            out[b, n] = module.proj(torch.cat(per_head, dim=-1))
    return out


def test_models_without_text_keep_their_parameters_and_outputs():
    plain = create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3, num_classes=5)
    text_model = create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3, num_classes=5,
                              text_dim=TEXT_DIM)
    text_keys = set(text_model.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(text_model.state_dict())
    assert text_keys and all(key.startswith("text_embedder.") or ".cross_attn." in key or ".norm_cross." in key
                             for key in text_keys)
    assert not any("temporal_blocks" in key for key in text_keys)  # cross-attention only where Latte-T2V has it
    plain = tiny_text_model(text_dim=0, num_classes=5)
    text_model.load_state_dict(plain.state_dict(), strict=False)
    x, t, y = torch.randn(2, 4, 3, 16, 16), torch.tensor([[10, 500, 999, 0], [3, 3, 3, 3]]), torch.tensor([1, 4])
    text, mask = random_text()
    with torch.no_grad():
        expected = plain(x, t, y)
        # A fresh text model's cross-attention outputs zero: it starts as the model without text.
        torch.testing.assert_close(text_model.eval()(x, t, y, text=text, text_mask=mask), expected, atol=0, rtol=0)
    with pytest.raises(ValueError, match="takes no text"):
        plain(x, t, y, text=text)


@pytest.mark.parametrize("attention", ["sdpa", "matmul"])
def test_cross_attention_is_per_frame_and_ignores_padding(attention):
    model = tiny_text_model(attention=attention)
    module = model.spatial_blocks[0].cross_attn
    x = torch.randn(2, 4, 16, model.hidden_size)
    text = torch.randn(2, 4, 6, model.hidden_size)
    mask = torch.zeros(2, 4, 6, dtype=torch.bool)
    mask[0, :, :6], mask[1, :, :2], mask[1, 2, :5] = True, True, True
    with torch.no_grad():
        ours = module(x, text, mask)
        torch.testing.assert_close(ours, naive_cross_attention(module, x, text, mask), atol=1e-5, rtol=1e-5)
        padded_changed = torch.where(mask[..., None], text, torch.randn_like(text))
        torch.testing.assert_close(module(x, padded_changed, mask), ours, atol=0, rtol=0)
        # Frame 2's text reaches only frame 2's tokens.
        other = text.clone()
        other[:, 2] = torch.randn_like(other[:, 2])
        changed = (module(x, other, mask) - ours).abs().amax(dim=(-1, -2))  # (B, N)
    assert torch.all(changed[:, 2] > 0) and torch.all(changed[:, [0, 1, 3]] == 0)


@pytest.mark.parametrize("text_adaln", [False, True])
def test_one_prompt_per_clip_equals_that_prompt_on_every_frame(text_adaln):
    model = tiny_text_model(text_adaln=text_adaln)
    x, t = torch.randn(2, 4, 3, 16, 16), torch.randint(0, 1000, (2, 4))
    text, mask = random_text()
    with torch.no_grad():
        per_clip = model(x, t, text=text, text_mask=mask)
        per_frame = model(x, t, text=text[:, None].expand(-1, 4, -1, -1), text_mask=mask[:, None].expand(-1, 4, -1))
        other_prompt = model(x, t, text=torch.randn_like(text), text_mask=mask)
    torch.testing.assert_close(per_clip, per_frame, atol=1e-5, rtol=1e-5)
    assert (per_clip - other_prompt).abs().max() > 1e-3  # the text is heard


@pytest.mark.parametrize("text_adaln", [False, True])
def test_null_prompt_replaces_the_text_per_clip_or_per_frame(text_adaln):
    model = tiny_text_model(text_adaln=text_adaln)
    x, t = torch.randn(2, 4, 3, 16, 16), torch.randint(0, 1000, (2, 4))
    text, mask = random_text(frames=4)
    with torch.no_grad():
        null = model(x, t)  # no text on a text model: the null prompt
        dropped = model(x, t, text=text, text_mask=mask, drop_text=torch.tensor([True, True]))
        torch.testing.assert_close(dropped, null, atol=1e-5, rtol=1e-5)
        drop_frames = torch.tensor([[False, True, False, False], [False, False, False, True]])
        partly = model(x, t, text=text, text_mask=mask, drop_text=drop_frames)
        other = text.clone()
        other[drop_frames] = torch.randn_like(other[drop_frames])
        torch.testing.assert_close(model(x, t, text=other, text_mask=mask, drop_text=drop_frames), partly,
                                   atol=0, rtol=0)
        conditioned = model(x, t, text=text, text_mask=mask)
        guided = model.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), None, 3.0, text=torch.cat([text, text]),
                                        text_mask=torch.cat([mask, mask]),
                                        drop_text=torch.tensor([False, False, True, True]))
    torch.testing.assert_close(guided[:2, :, :3], null[:, :, :3] + 3.0 * (conditioned[:, :, :3] - null[:, :, :3]),
                               atol=1e-4, rtol=1e-4)


def test_prompt_dropout_drops_whole_clips_at_its_rate():
    model = tiny_text_model(text_dropout_prob=0.25).train()
    embedder = model.text_embedder
    text, mask = torch.randn(4000, 4, 3, TEXT_DIM), torch.ones(4000, 4, 3, dtype=torch.bool)
    torch.manual_seed(0)
    _, out_mask, _ = embedder(text, mask, torch.zeros(4000, 4, dtype=torch.bool), train=True)
    dropped = ~out_mask[..., 1]  # a dropped clip keeps only its null token
    assert torch.all(dropped == dropped[:, :1])
    assert abs(dropped[:, 0].float().mean().item() - 0.25) < 4 * (0.25 * 0.75 / 4000) ** 0.5
    _, eval_mask, _ = embedder(text, mask, torch.zeros(4000, 4, dtype=torch.bool), train=False)
    assert eval_mask.all()


def test_text_adaln_adds_each_frames_pooled_prompt_to_its_conditioning():
    """Against a slow reference: the forward pass rebuilt by hand, with c = timestep embedding + MLP(mean of the
    frame's valid tokens); the pooled prompt reaches the temporal blocks' modulation, frame by frame."""
    fresh = create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3, text_dim=TEXT_DIM, text_adaln=True)
    model = tiny_text_model(text_adaln=True)
    plain_keys = set(tiny_text_model().state_dict())
    assert set(model.state_dict()) - plain_keys == {f"text_embedder.pooled_mlp.{i}.{kind}" for i in (0, 2)
                                                    for kind in ("weight", "bias")}
    x, t = torch.randn(2, 4, 3, 16, 16), torch.tensor([[10, 500, 999, 0], [3, 3, 3, 3]])
    text, mask = random_text(frames=4)
    mask[1, 2, :5] = True  # frame 2 of clip 1 has 5 valid tokens, the others of that clip 3
    with torch.no_grad():
        without = create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3, text_dim=TEXT_DIM).eval()
        without.load_state_dict(fresh.state_dict(), strict=False)
        # A fresh text_adaln model starts as the one without it.
        torch.testing.assert_close(fresh.eval()(x, t, text=text, text_mask=mask),
                                   without(x, t, text=text, text_mask=mask), atol=0, rtol=0)
        ours = model(x, t, text=text, text_mask=mask)
        mean_tokens = torch.stack([torch.stack([text[b, n, mask[b, n]].mean(dim=0) for n in range(4)])
                                   for b in range(2)])  # (B, N, Dt)
        c = model.t_embedder(t) + model.text_embedder.pooled_mlp(mean_tokens)
        tokens, _, _ = model.text_embedder(text, mask, torch.zeros(2, 4, dtype=torch.bool), train=False)
        h = rearrange(model.x_embedder(rearrange(x, "b n c h w -> (b n) c h w")) + model.pos_embed,
                      "(b n) t d -> b n t d", b=2)
        for i, (spatial, temporal) in enumerate(zip(model.spatial_blocks, model.temporal_blocks)):
            h = spatial(h, c, tokens, mask)
            if i == 0:
                h = h + model.temp_embed[0, :4, None]
            h = temporal(h, c)
        reference = model.unpatchify(model.final_layer(h, c))
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
        padded_changed = torch.where(mask[..., None], text, torch.randn_like(text))
        torch.testing.assert_close(model(x, t, text=padded_changed, text_mask=mask), ours, atol=0, rtol=0)
        seen = []
        hook = model.temporal_blocks[0].adaLN_modulation.register_forward_hook(
            lambda module, inputs, output: seen.append(inputs[0]))
        other = text.clone()
        other[:, 2] = torch.randn_like(other[:, 2])
        model(x, t, text=text, text_mask=mask)
        model(x, t, text=other, text_mask=mask)
        hook.remove()
    changed = (seen[1] - seen[0]).abs().amax(dim=-1)  # (B, N): the temporal block's conditioning per frame
    assert torch.all(changed[:, 2] > 0) and torch.all(changed[:, [0, 1, 3]] == 0)
    with pytest.raises(ValueError, match="text_adaln .* needs text_dim > 0"):
        create_model("Latte-T/4", input_size=16, text_adaln=True)


def test_text_shapes_are_checked_by_name():
    model = tiny_text_model()
    x, t = torch.randn(2, 4, 3, 16, 16), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"text must have shape \(2, L, 24\) or \(2, 4, L, 24\)"):
        model(x, t, text=torch.randn(2, 3, 6, TEXT_DIM))
    with pytest.raises(ValueError, match="text_mask must have shape"):
        model(x, t, text=torch.randn(2, 6, TEXT_DIM), text_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="hides every token"):
        model(x, t, text=torch.randn(2, 6, TEXT_DIM), text_mask=torch.zeros(2, 6, dtype=torch.bool))


@pytest.mark.parametrize("text_adaln", [False, True])
def test_gradient_checkpointing_and_bf16_with_text(text_adaln):
    model = tiny_text_model(text_adaln=text_adaln).train()
    model.text_embedder.dropout_prob = 0.0
    x, t = torch.randn(2, 4, 3, 16, 16), torch.randint(0, 1000, (2, 4))
    text, mask = random_text(frames=4)
    out = model(x, t, text=text, text_mask=mask)
    out.square().mean().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == {name for name, p in model.named_parameters() if p.requires_grad} - \
        {"text_embedder.null_embedding"}  # nothing dropped here
    assert grads["spatial_blocks.0.cross_attn.kv.weight"].abs().max() > 0
    assert grads["text_embedder.fc1.weight"].abs().max() > 0
    if text_adaln:
        assert grads["text_embedder.pooled_mlp.0.weight"].abs().max() > 0
    model.zero_grad()
    model.gradient_checkpointing = True
    torch.testing.assert_close(model(x, t, text=text, text_mask=mask), out, atol=0, rtol=0)
    model(x, t, text=text, text_mask=mask).square().mean().backward()
    for name, p in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(p.grad, grads[name], atol=1e-6, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = model(x, t, text=text, text_mask=mask)
    assert (out_bf16.float() - out.detach()).abs().max() < 0.05 * out.detach().abs().max()


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder("minilm", max_length=16)


def test_minilm_loads_offline_and_encodes_prompts_with_their_mask(minilm):
    prompts = ["a red circle moving right", "a blue square moving up", ""]
    embeddings, mask = minilm.encode(prompts)
    assert minilm.dim == 384 and embeddings.shape == (3, 16, 384) and mask.shape == (3, 16)
    assert mask.sum(dim=1).tolist() == [7, 7, 2]  # [CLS] + words + [SEP]; the empty prompt keeps its two
    assert torch.all(embeddings[~mask] == 0)
    assert (embeddings[0] - embeddings[1])[mask[0] & mask[1]].abs().max() > 0.1
    again, _ = minilm.encode(prompts[:1])
    torch.testing.assert_close(again[0], embeddings[0], atol=1e-5, rtol=1e-5)  # deterministic, batch-independent
    with pytest.warns(UserWarning, match="cut to text_max_length=16"):
        minilm.encode(["a very long prompt " * 10])


def test_encode_frames_encodes_each_prompt_once_and_places_it_per_frame(minilm):
    frame_prompts = [["a red circle", "a red circle", "a blue square"], ["a blue square"] * 3]
    embeddings, mask = minilm.encode_frames(frame_prompts)
    single, single_mask = minilm.encode(["a red circle", "a blue square"])
    assert embeddings.shape == (2, 3, 16, 384)
    torch.testing.assert_close(embeddings[0, 1], single[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embeddings[1, 0], single[1], atol=1e-5, rtol=1e-5)
    assert torch.equal(mask[0, 2], single_mask[1])
    with pytest.raises(ValueError, match="same number of prompts"):
        minilm.encode_frames([["a"], ["a", "b"]])


def test_a_local_t5_folder_loads_as_a_t5_encoder_and_drives_a_model(tmp_path):
    from transformers import T5Config, T5EncoderModel

    minilm_folder = resolve_text_encoder_path("minilm")
    folder = tmp_path / "tiny-t5"
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=30522, d_model=TEXT_DIM, d_kv=6, d_ff=48, num_layers=2, num_heads=4)
                   ).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_folder / name, folder / name)  # any tokenizer the folder carries; T5's own needs a download
    encoder = TextEncoder(folder, max_length=8)
    assert type(encoder.model).__name__ == "T5EncoderModel" and encoder.dim == TEXT_DIM
    text, mask = encoder.encode(["a green diamond moving left", "a red circle"])
    model = tiny_text_model()
    with torch.no_grad():
        out = model(torch.randn(2, 4, 3, 16, 16), torch.tensor([5, 900]), text=text, text_mask=mask)
    assert out.shape == (2, 4, 6, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        TextEncoder(tmp_path / "missing")
