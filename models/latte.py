"""Latte video DiT with a vectorized (per-frame) timestep: the FVDM backbone.

Tokens are kept as (B, N, T, D): N frames, T = (H / patch) * (W / patch) patches per frame.
Spatial blocks attend over T within each frame; temporal blocks attend over N at each patch position.
Each frame's adaLN-Zero modulation is computed once per block from its own timestep embedding (B, N, D)
and broadcast over that frame's tokens, so a per-frame timestep costs the same as a scalar one.
A text-conditioned model (text_dim > 0) adds cross-attention to the spatial blocks, where Latte-T2V has it: each
frame's patches attend to that frame's text tokens (B, N, L, D), so every frame may carry its own prompt. With
text_adaln, each frame's pooled prompt also joins its timestep embedding in the adaLN conditioning, so the temporal
blocks and the final layer see the prompt too.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from torch.utils.checkpoint import checkpoint

from .checkpoint import load_pretrained, pretrained_weights_path, read_pretrained_config, save_pretrained_folder


def modulate(x, shift, scale):
    return torch.addcmul(shift, x, 1 + scale)  # x * (1 + scale) + shift in one pass over x


#################################################################################
#               Embedding layers for timesteps, class labels and patches        #
#################################################################################

class TimestepEmbedder(nn.Module):
    """Sinusoidal frequencies of each (per-frame) timestep -> MLP."""

    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        """t: any shape of (possibly fractional) timesteps -> t.shape + (dim,), cos then sin as in DiT."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[..., None] * freqs
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[..., :1])], dim=-1)
        return embedding

    def forward(self, t):
        t_freq = self.timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(t_freq.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class labels -> vectors; drops labels to the null class (id num_classes) for classifier-free guidance."""

    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels, train):
        if train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels)


class TextEmbedder(nn.Module):
    """Text-encoder tokens -> the model's width (PixArt's caption projection); drops prompts to a learned null.

    A dropped prompt (or frame) becomes a single null token, whatever the encoder's length, so the unconditional
    branch of classifier-free guidance needs no text encoder at all. With pooled, it also returns each prompt's
    masked mean token through an MLP (B, n, D), the vector text_adaln adds to the frame's adaLN conditioning.
    """

    def __init__(self, text_dim, hidden_size, dropout_prob, pooled=False):
        super().__init__()
        self.fc1 = nn.Linear(text_dim, hidden_size)
        self.fc2 = nn.Linear(hidden_size, hidden_size)
        self.null_embedding = nn.Parameter(torch.randn(text_dim) / text_dim**0.5)
        self.dropout_prob = dropout_prob
        self.pooled_mlp = nn.Sequential(nn.Linear(text_dim, hidden_size), nn.SiLU(),
                                        nn.Linear(hidden_size, hidden_size)) if pooled else None

    def forward(self, text, text_mask, drop, train):
        # text: (B, n, L, Dt) with n = N frames or 1 for one prompt per clip; text_mask: (B, n, L); drop: (B, n)
        if train and self.dropout_prob > 0:
            drop = drop | (torch.rand(drop.shape[0], 1, device=drop.device) < self.dropout_prob)  # whole clips
        if drop.any():
            text = torch.where(drop[..., None, None], self.null_embedding.to(text.dtype), text)
            first_token = torch.zeros_like(text_mask)
            first_token[..., 0] = True
            text_mask = torch.where(drop[..., None], first_token, text_mask)
        tokens = self.fc2(F.gelu(self.fc1(text), approximate="tanh"))  # (B, n, L, D)
        if self.pooled_mlp is None:
            return tokens, text_mask, None
        weights = text_mask.to(text.dtype)[..., None]  # (B, n, L, 1)
        mean_token = (text * weights).sum(dim=2) / weights.sum(dim=2)  # (B, n, Dt), padding left out
        return tokens, text_mask, self.pooled_mlp(mean_token)  # (B, n, D)


class PatchEmbed(nn.Module):
    """Per-frame patchify: (B*N, C, H, W) -> (B*N, T, D)."""

    def __init__(self, input_size, patch_size, in_channels, hidden_size):
        super().__init__()
        self.num_patches = (input_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x):
        return rearrange(self.proj(x), "bn d h w -> bn (h w) d")


#################################################################################
#                                 Core Latte blocks                             #
#################################################################################

ATTENTION_BACKENDS = ("auto", "sdpa", "matmul")


def matmul_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d)) v as two batched matmuls around a softmax; mask: True where a key may be seen."""
    weights = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (..., Lq, Lk)
    if mask is not None:
        weights = weights.masked_fill(~mask, float("-inf"))
    return torch.matmul(weights.softmax(dim=-1), v)


def attention_backend(q, requested="auto"):
    """The kernel "auto" picks for q of shape (..., L, head_dim), by device, dtype and L.

    On CPU, SDPA's flash kernel loses to two matmuls and a softmax in bf16 / fp16 and at short L, and wins in fp32
    at long L (README, Performance; `tools/benchmark.py --attention_table` times both on the machine at hand).
    """
    if requested != "auto":
        return requested
    if q.device.type != "cpu":
        return "sdpa"  # torch dispatches to its flash / memory-efficient / cuDNN kernels
    if q.dtype in (torch.bfloat16, torch.float16) or q.shape[-2] <= 64:
        return "matmul"
    return "sdpa"


def attention(q, k, v, backend="auto", mask=None):
    """Multi-head attention of q, k, v of shape (..., heads, L, head_dim) with the backend chosen for them.

    mask: boolean, broadcastable to (..., heads, Lq, Lk), True where a key may be attended to.
    """
    if attention_backend(q, backend) == "matmul":
        return matmul_attention(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Attention(nn.Module):
    """Self-attention over the frames (temporal) or over the patches of each frame (spatial) of (B, N, T, D) tokens.

    Both read and write the (B, N, T, D) layout: the split into heads makes the one copy either needs, so temporal
    blocks need no transposes of their own.
    """

    def __init__(self, dim, num_heads, temporal, backend="auto"):
        super().__init__()
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention backend {backend!r}: choose one of {list(ATTENTION_BACKENDS)}")
        self.num_heads = num_heads
        self.temporal = temporal
        self.backend = backend
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # x: (B, N, T, D)
        qkv = self.qkv(x)  # (B, N, T, 3D)
        if self.temporal:
            q, k, v = rearrange(qkv, "b n t (three h d) -> three b t h n d", three=3, h=self.num_heads)
            out = rearrange(attention(q, k, v, self.backend), "b t h n d -> b n t (h d)")
        else:
            q, k, v = rearrange(qkv, "b n t (three h d) -> three b n h t d", three=3, h=self.num_heads)
            out = rearrange(attention(q, k, v, self.backend), "b n h t d -> b n t (h d)")
        return self.proj(out)


class CrossAttention(nn.Module):
    """Each frame's patch tokens (B, N, T, D) attend to that frame's text tokens (B, n, L, D), n = N or 1.

    One prompt for the clip (n = 1) is projected once and broadcast over the frames.
    """

    def __init__(self, dim, num_heads, backend="auto"):
        super().__init__()
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention backend {backend!r}: choose one of {list(ATTENTION_BACKENDS)}")
        self.num_heads = num_heads
        self.backend = backend
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, text, text_mask):  # x: (B, N, T, D); text: (B, n, L, D); text_mask: (B, n, L)
        num_frames = x.shape[1]
        q = rearrange(self.q(x), "b n t (h d) -> b n h t d", h=self.num_heads)
        k, v = rearrange(self.kv(text), "b n l (two h d) -> two b n h l d", two=2, h=self.num_heads)
        k, v = k.expand(-1, num_frames, -1, -1, -1), v.expand(-1, num_frames, -1, -1, -1)  # (B, N, h, L, d)
        mask = rearrange(text_mask, "b n l -> b n 1 1 l").expand(-1, num_frames, -1, -1, -1)
        out = attention(q, k, v, self.backend, mask)  # (B, N, h, T, d)
        return self.proj(rearrange(out, "b n h t d -> b n t (h d)"))


class Mlp(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class LatteBlock(nn.Module):
    """adaLN-Zero transformer block attending over patches (spatial) or over frames (temporal).

    With cross_attention (text models' spatial blocks), the patches then attend to their frame's text, between the
    self-attention and the MLP as in Latte-T2V; its output projection starts at zero, so a fresh text model starts
    as the unconditional one.
    """

    def __init__(self, hidden_size, num_heads, mlp_ratio, temporal, attention_backend="auto", cross_attention=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, temporal, attention_backend)
        if cross_attention:
            self.norm_cross = nn.LayerNorm(hidden_size, eps=1e-6)
            self.cross_attn = CrossAttention(hidden_size, num_heads, attention_backend)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x, c, text=None, text_mask=None):
        # x: (B, N, T, D); c: (B, N, D), one conditioning vector per frame, broadcast over its T tokens;
        # text: (B, n, L, D) and text_mask (B, n, L), n = N or 1, in blocks with cross-attention.
        modulation = self.adaLN_modulation(c).unsqueeze(2)  # (B, N, 1, 6D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation.chunk(6, dim=-1)
        x = torch.addcmul(x, gate_msa, self.attn(modulate(self.norm1(x), shift_msa, scale_msa)))
        if text is not None:
            x = x + self.cross_attn(self.norm_cross(x), text, text_mask)
        return torch.addcmul(x, gate_mlp, self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x, c):  # x: (B, N, T, D); c: (B, N, D)
        shift, scale = self.adaLN_modulation(c).unsqueeze(2).chunk(2, dim=-1)  # (B, N, 1, D) each
        return self.linear(modulate(self.norm_final(x), shift, scale))


#################################################################################
#                                   Latte model                                 #
#################################################################################

class Latte(nn.Module):
    def __init__(
        self,
        input_size=32,
        patch_size=2,
        in_channels=4,
        hidden_size=1152,
        depth=28,
        num_heads=16,
        mlp_ratio=4.0,
        num_frames=16,
        class_dropout_prob=0.1,
        num_classes=0,
        learn_sigma=True,
        gradient_checkpointing=False,
        attention="auto",
        text_dim=0,
        text_dropout_prob=0.1,
        text_adaln=False,
    ):
        super().__init__()
        # Every constructor argument, as save_pretrained writes it to config.json (read before any other local).
        self.config = {key: value for key, value in locals().items() if key not in ("self", "__class__")}
        if depth % 2:
            raise ValueError(f"depth counts spatial and temporal blocks together and must be even, got {depth}")
        if text_adaln and text_dim == 0:
            raise ValueError("text_adaln adds the pooled prompt to the adaLN conditioning: it needs text_dim > 0")
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.hidden_size = hidden_size
        self.text_dim = text_dim
        self.gradient_checkpointing = gradient_checkpointing

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob) if num_classes > 0 else None
        self.text_embedder = TextEmbedder(text_dim, hidden_size, text_dropout_prob, pooled=text_adaln) \
            if text_dim > 0 else None
        num_patches = self.x_embedder.num_patches
        # Fixed sin-cos embeddings, kept as frozen parameters so state dicts match Latte's.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.temp_embed = nn.Parameter(torch.zeros(1, num_frames, hidden_size), requires_grad=False)
        self.spatial_blocks = nn.ModuleList(
            [LatteBlock(hidden_size, num_heads, mlp_ratio, temporal=False, attention_backend=attention,
                        cross_attention=text_dim > 0)
             for _ in range(depth // 2)]
        )
        self.temporal_blocks = nn.ModuleList(
            [LatteBlock(hidden_size, num_heads, mlp_ratio, temporal=True, attention_backend=attention)
             for _ in range(depth // 2)]
        )
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)
        grid_size = int(self.x_embedder.num_patches ** 0.5)
        self.pos_embed.data.copy_(torch.from_numpy(get_2d_sincos_pos_embed(self.hidden_size, grid_size)).float()[None])
        self.temp_embed.data.copy_(torch.from_numpy(get_1d_sincos_pos_embed(self.hidden_size, self.num_frames)).float()[None])

        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.constant_(self.x_embedder.proj.bias, 0)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity and the model outputs zeros.
        for block in [*self.spatial_blocks, *self.temporal_blocks]:
            nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
            nn.init.constant_(block.adaLN_modulation[-1].bias, 0)
            if hasattr(block, "cross_attn"):
                nn.init.constant_(block.cross_attn.proj.weight, 0)
                nn.init.constant_(block.cross_attn.proj.bias, 0)
        if self.text_embedder is not None and self.text_embedder.pooled_mlp is not None:
            nn.init.constant_(self.text_embedder.pooled_mlp[-1].weight, 0)  # starts as the model without it
            nn.init.constant_(self.text_embedder.pooled_mlp[-1].bias, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    def save_pretrained(self, folder, training_config=None):
        """Hugging Face layout: config.json (every constructor argument) + diffusion_pytorch_model.safetensors, and
        training_config.json (diffusion, data, VAE and text encoder settings) when given, which the sampler reads."""
        save_pretrained_folder(folder, {"_class_name": type(self).__name__, **self.config}, self.state_dict(),
                               training_config)

    @classmethod
    def from_pretrained(cls, folder, **overrides):
        """The model save_pretrained wrote to `folder`, in eval mode; overrides replace constructor arguments
        (e.g. attention="sdpa", gradient_checkpointing=True; one that changes the architecture fails to load)."""
        config = read_pretrained_config(folder, cls.__name__)
        unknown = sorted(set(overrides) - set(config))
        if unknown:
            raise TypeError(f"from_pretrained: {unknown} are not {cls.__name__} arguments; choose from {sorted(config)}")
        model = cls(**{**config, **overrides})
        load_pretrained(model, pretrained_weights_path(folder))
        return model.eval()

    def unpatchify(self, x):  # (B, N, T, p*p*C) -> (B, N, C, H, W)
        grid = self.input_size // self.patch_size
        return rearrange(
            x, "b n (h w) (p q c) -> b n c (h p) (w q)", h=grid, w=grid, p=self.patch_size, q=self.patch_size
        )

    def frame_conditioning(self, t, y, batch, num_frames):
        """Per-frame conditioning vectors (B, N, D) from t of shape (B,) or (B, N) and labels y (B,)."""
        if t.dim() == 1:
            t = t[:, None].expand(batch, num_frames)
        if t.shape != (batch, num_frames):
            raise ValueError(f"timesteps must have shape ({batch},) or ({batch}, {num_frames}), got {tuple(t.shape)}")
        c = self.t_embedder(t)  # (B, N, D)
        if self.y_embedder is not None:
            if y is None:
                raise ValueError("this model is class-conditional (num_classes > 0): pass labels y of shape (B,)")
            c = c + self.y_embedder(y, self.training)[:, None]  # (B, 1, D) broadcast over frames
        return c

    def text_conditioning(self, text, text_mask, drop_text, batch, num_frames):
        """Projected text tokens (B, n, L, D), their mask (B, n, L) and the pooled prompts (B, n, D) (None without
        text_adaln), n = N frames or 1; (None, None, None) for a model without text.

        text: (B, L, Dt) one prompt per clip or (B, N, L, Dt) one per frame; None on a text model means the null
        prompt. drop_text: (B,) or (B, N), True where the null prompt replaces the text (the unconditional branch
        of classifier-free guidance).
        """
        if self.text_embedder is None:
            if text is not None or drop_text is not None:
                raise ValueError("this model takes no text (text_dim = 0): build it with text_dim > 0 to pass text")
            return None, None, None
        if text is None:
            text = torch.zeros(batch, 1, 1, self.text_dim, device=self.pos_embed.device)
            drop_text = torch.ones(batch, dtype=torch.bool, device=text.device)
        if text.dim() == 3:
            text = text[:, None]  # (B, 1, L, Dt)
            text_mask = None if text_mask is None else text_mask[:, None]
        if text.dim() != 4 or text.shape[0] != batch or text.shape[1] not in (1, num_frames) or \
                text.shape[-1] != self.text_dim:
            raise ValueError(f"text must have shape ({batch}, L, {self.text_dim}) or ({batch}, {num_frames}, L, "
                             f"{self.text_dim}), got {tuple(text.shape)}")
        if text_mask is None:
            text_mask = torch.ones(text.shape[:3], dtype=torch.bool, device=text.device)
        if text_mask.shape != text.shape[:3]:
            raise ValueError(f"text_mask must have shape {tuple(text.shape[:3])} to match the text, "
                             f"got {tuple(text_mask.shape)}")
        text_mask = text_mask.bool()
        if not text_mask.any(dim=-1).all():
            raise ValueError("text_mask hides every token of some prompt: each prompt needs at least one")
        if drop_text is None:
            drop_text = torch.zeros(batch, dtype=torch.bool, device=text.device)
        drop_text = drop_text.bool().reshape(batch, -1)  # (B, 1) or (B, N)
        if drop_text.shape[1] not in (1, num_frames):
            raise ValueError(f"drop_text must have shape ({batch},) or ({batch}, {num_frames}), "
                             f"got {tuple(drop_text.shape)}")
        frames = max(text.shape[1], drop_text.shape[1])
        text = text.expand(-1, frames, -1, -1)
        text_mask = text_mask.expand(-1, frames, -1)
        drop_text = drop_text.expand(-1, frames)
        return self.text_embedder(text, text_mask, drop_text, self.training)

    def forward(self, x, t, y=None, text=None, text_mask=None, drop_text=None):
        """x: (B, N, C, H, W); t: (B, N) per-frame or (B,) shared timesteps; y: (B,) labels;
        text: (B, L, Dt) or (B, N, L, Dt) text-encoder tokens with text_mask (B, [N,] L) (text models only)."""
        batch, num_frames = x.shape[:2]
        if num_frames > self.temp_embed.shape[1]:
            raise ValueError(f"got {num_frames} frames but the model was built for at most {self.temp_embed.shape[1]}")
        c = self.frame_conditioning(t, y, batch, num_frames)
        text, text_mask, pooled_text = self.text_conditioning(text, text_mask, drop_text, batch, num_frames)
        if pooled_text is not None:
            c = c + pooled_text  # (B, N, D) + (B, n, D), n = N or 1

        x = self.x_embedder(rearrange(x, "b n c h w -> (b n) c h w")) + self.pos_embed  # (B*N, T, D)
        x = rearrange(x, "(b n) t d -> b n t d", b=batch)
        for i, (spatial, temporal) in enumerate(zip(self.spatial_blocks, self.temporal_blocks)):
            x = self.run_block(spatial, x, c, text, text_mask)
            if i == 0:  # Latte adds the temporal embedding once, before the first temporal block
                x = x + self.temp_embed[0, :num_frames, None]  # (N, 1, D)
            x = self.run_block(temporal, x, c)
        x = self.final_layer(x, c)  # (B, N, T, p*p*C_out)
        return self.unpatchify(x)

    def compile_blocks(self, **compile_options):
        """torch.compile each transformer block in place (regional compilation).

        The spatial blocks share one compiled graph and the temporal blocks another, so compiling takes a fraction
        of compiling the whole model; state-dict keys and gradient checkpointing are unchanged. A shape seen to
        change (frames, batch) is made dynamic at its first recompile, so later changes do not recompile.
        """
        for block in [*self.spatial_blocks, *self.temporal_blocks]:
            block.compile(**compile_options)
        return self

    def run_block(self, block, x, c, text=None, text_mask=None):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, c, text, text_mask, use_reentrant=False)
        if text is None:
            return block(x, c)
        return block(x, c, text, text_mask)

    def forward_with_cfg(self, x, t, y, cfg_scale, **text_conditioning):
        """Classifier-free guidance on a batch whose second half carries the null label (or drop_text), as in DiT."""
        half = x[: len(x) // 2]
        combined = torch.cat([half, half], dim=0)
        model_out = self.forward(combined, t, y, **text_conditioning)
        eps, rest = model_out[:, :, : self.in_channels], model_out[:, :, self.in_channels :]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        eps = torch.cat([half_eps, half_eps], dim=0)
        return torch.cat([eps, rest], dim=2)


#################################################################################
#                         Sine/cosine positional embeddings                     #
#################################################################################

def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    """pos: positions (M,) -> (M, embed_dim), sin then cos."""
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_1d_sincos_pos_embed(embed_dim, length):
    return get_1d_sincos_pos_embed_from_grid(embed_dim, np.arange(length))


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    """(grid_size**2, embed_dim): half the channels encode the row, half the column, as DiT/Latte."""
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0)  # w first, as DiT
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


#################################################################################
#                                  Latte configs                                #
#################################################################################

# (depth = spatial + temporal blocks, hidden size, heads), as DiT's sizes; T is a tiny size for CPU demos and tests.
# T's depth 6: the best of 4, 6 and 8 blocks on the demo in equal CPU time, see docs/experiments.md.
MODEL_SIZES = {
    "XL": dict(depth=28, hidden_size=1152, num_heads=16),
    "L": dict(depth=24, hidden_size=1024, num_heads=16),
    "B": dict(depth=12, hidden_size=768, num_heads=12),
    "S": dict(depth=12, hidden_size=384, num_heads=6),
    "T": dict(depth=6, hidden_size=128, num_heads=4),
}
MODEL_NAMES = [f"Latte-{size}/{patch}" for size in MODEL_SIZES for patch in (2, 4, 8)]


def model_name(config):
    """The Latte-<size>/<patch> name of a model's constructor arguments (Latte.config), or None for another size."""
    for size, dims in MODEL_SIZES.items():
        if all(config[key] == value for key, value in dims.items()):
            return f"Latte-{size}/{config['patch_size']}"
    return None


def create_model(
    name,
    input_size=32,
    num_frames=16,
    in_channels=4,
    num_classes=0,
    learn_sigma=True,
    class_dropout_prob=0.1,
    gradient_checkpointing=False,
    attention="auto",
    text_dim=0,
    text_dropout_prob=0.1,
    text_adaln=False,
):
    """Build e.g. create_model("Latte-XL/2", num_classes=101); attention: "auto" | "sdpa" | "matmul" (same weights).

    text_dim: the text encoder's width (384 for MiniLM, 4096 for T5-XXL) for a text-to-video model, 0 for none;
    text_adaln: add each frame's pooled prompt to its adaLN conditioning as well (text models only).
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    size, patch = name[len("Latte-"):].split("/")
    return Latte(
        input_size=input_size,
        patch_size=int(patch),
        in_channels=in_channels,
        num_frames=num_frames,
        num_classes=num_classes,
        learn_sigma=learn_sigma,
        class_dropout_prob=class_dropout_prob,
        gradient_checkpointing=gradient_checkpointing,
        attention=attention,
        text_dim=text_dim,
        text_dropout_prob=text_dropout_prob,
        text_adaln=text_adaln,
        **MODEL_SIZES[size],
    )
