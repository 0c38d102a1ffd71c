"""Gaussian diffusion for videos with per-frame timesteps (FVDM's vectorized timestep).

Videos are (B, N, C, H, W), channels on dim 2 as in Latte. A timestep t indexes this diffusion's own chain
(`num_timesteps` steps, respaced or not) and may be (B,), shared by all frames of a sample, or (B, N), one per
frame: coefficients are gathered per frame and broadcast over (C, H, W), so the forward process, the posterior
and the losses act on each frame at its own noise level. Sampling has one step, `vtv_step`, between base-scale
levels (0..base_num_timesteps-1, -1 = clean) per frame; diffusion/vtv.py drives it for every preset.
"""
import enum
import math

import numpy as np
import torch

from .diffusion_utils import discretized_gaussian_log_likelihood, normal_kl


class ModelMeanType(enum.Enum):
    PREVIOUS_X = enum.auto()  # the model predicts x_{t-1}
    START_X = enum.auto()  # the model predicts x_0
    EPSILON = enum.auto()  # the model predicts epsilon
    VELOCITY = enum.auto()  # the model predicts v = sqrt(alpha_bar) * epsilon - sqrt(1 - alpha_bar) * x_0


class ModelVarType(enum.Enum):
    LEARNED = enum.auto()  # the model outputs log-variance directly
    FIXED_SMALL = enum.auto()  # posterior variance
    FIXED_LARGE = enum.auto()  # beta_t
    LEARNED_RANGE = enum.auto()  # the model interpolates between the two fixed ones (IDDPM)


class LossType(enum.Enum):
    MSE = enum.auto()  # noise MSE, plus the VLB term when the variance is learned
    RESCALED_MSE = enum.auto()  # same, VLB scaled by num_timesteps / 1000
    KL = enum.auto()  # the variational bound
    RESCALED_KL = enum.auto()

    def is_vb(self):
        return self in (LossType.KL, LossType.RESCALED_KL)


def get_named_beta_schedule(schedule_name, num_diffusion_timesteps):
    if schedule_name == "linear":
        scale = 1000 / num_diffusion_timesteps  # Ho et al.'s 1e-4..0.02 for 1000 steps, rescaled
        return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)
    if schedule_name == "squaredcos_cap_v2":
        return betas_for_alpha_bar(num_diffusion_timesteps, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2)
    raise ValueError(f"unknown noise_schedule {schedule_name!r}; use 'linear' or 'squaredcos_cap_v2'")


def betas_for_alpha_bar(num_diffusion_timesteps, alpha_bar, max_beta=0.999):
    betas = []
    for i in range(num_diffusion_timesteps):
        t1, t2 = i / num_diffusion_timesteps, (i + 1) / num_diffusion_timesteps
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return np.array(betas, dtype=np.float64)


def _extract(arr, timesteps, broadcast_shape):
    """Gather arr[t] for t of shape (B,) or (B, N) and broadcast to a (B, N, C, H, W) shape."""
    res = arr.to(timesteps.device)[timesteps].float()
    while res.ndim < len(broadcast_shape):
        res = res[..., None]
    return res.expand(broadcast_shape)


def randn_like(x, generator=None):
    """Standard normal noise shaped like x from one generator, or from one generator per sample (a list), so a
    sample's draws do not depend on which other samples share its batch."""
    if isinstance(generator, (list, tuple)):
        return torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype) for g in generator])
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def frame_view(values, x):
    """(B,) or (B, N) per-sample/per-frame values -> broadcastable against x (B, N, C, H, W)."""
    while values.ndim < x.ndim:
        values = values[..., None]
    return values


class GaussianDiffusion:
    def __init__(self, *, betas, model_mean_type, model_var_type, loss_type, base_alphas_cumprod=None):
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type

        betas = np.array(betas, dtype=np.float64)
        assert betas.ndim == 1 and (betas > 0).all() and (betas <= 1).all()
        self.num_timesteps = int(betas.shape[0])

        alphas = 1.0 - betas
        alphas_cumprod = np.cumprod(alphas, axis=0)
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        alphas_cumprod_next = np.append(alphas_cumprod[1:], 0.0)
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # The posterior variance is 0 at t = 0: clip its log to the t = 1 value, as IDDPM.
        posterior_log_variance_clipped = (
            np.log(np.append(posterior_variance[1], posterior_variance[1:])) if len(posterior_variance) > 1
            else np.array([])
        )
        tables = dict(
            betas=betas,
            log_betas=np.log(betas),
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=alphas_cumprod_prev,
            alphas_cumprod_next=alphas_cumprod_next,
            sqrt_alphas_cumprod=np.sqrt(alphas_cumprod),
            sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - alphas_cumprod),
            log_one_minus_alphas_cumprod=np.log(1.0 - alphas_cumprod),
            sqrt_recip_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod),
            sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod - 1),
            posterior_variance=posterior_variance,
            posterior_log_variance_clipped=posterior_log_variance_clipped,
            posterior_mean_coef1=betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
            fixed_large_log_variance=np.log(np.append(posterior_variance[1], betas[1:])),
        )
        for name, value in tables.items():
            setattr(self, name, torch.from_numpy(np.ascontiguousarray(value)))

        # The un-respaced process. Per-frame VTV sampling steps between arbitrary levels of it, with
        # level -1 meaning clean data (alpha_bar = 1).
        base = alphas_cumprod if base_alphas_cumprod is None else np.asarray(base_alphas_cumprod, dtype=np.float64)
        self.base_num_timesteps = len(base)
        self.base_alphas_cumprod_with_clean = torch.from_numpy(np.append(1.0, base))

    @property
    def sampling_timesteps(self):
        """Ascending base-scale timesteps this diffusion visits (all of them unless respaced)."""
        return list(range(self.num_timesteps))

    # ------------------------------------------------------------------ forward process

    def q_sample(self, x_start, t, noise=None):
        """Noise each frame to its own level: t (B,) or (B, N)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        assert noise.shape == x_start.shape
        return (
            _extract(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
        )

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """q(x_{t-1} | x_t, x_0), per frame."""
        posterior_mean = (
            _extract(self.posterior_mean_coef1, t, x_t.shape) * x_start
            + _extract(self.posterior_mean_coef2, t, x_t.shape) * x_t
        )
        posterior_variance = _extract(self.posterior_variance, t, x_t.shape)
        posterior_log_variance_clipped = _extract(self.posterior_log_variance_clipped, t, x_t.shape)
        return posterior_mean, posterior_variance, posterior_log_variance_clipped

    # ------------------------------------------------------------------ reverse process

    def p_mean_variance(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        """p(x_{t-1} | x_t) and the x_0 prediction, per frame."""
        model_kwargs = model_kwargs or {}
        B, N, C = x.shape[:3]
        assert t.shape in ((B,), (B, N)), f"t must be (B,) or (B, N), got {tuple(t.shape)}"
        model_output = model(x, t, **model_kwargs)
        extra = None
        if isinstance(model_output, tuple):
            model_output, extra = model_output

        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            assert model_output.shape == (B, N, C * 2, *x.shape[3:]), f"unexpected output {tuple(model_output.shape)}"
            model_output, model_var_values = torch.split(model_output, C, dim=2)
        else:
            model_var_values = None
        max_table = self.fixed_large_log_variance if self.model_var_type == ModelVarType.FIXED_LARGE else self.log_betas
        min_log = _extract(self.posterior_log_variance_clipped, t, x.shape)
        model_log_variance = self._log_variance(model_var_values, min_log, _extract(max_table, t, x.shape))
        model_variance = torch.exp(model_log_variance)

        def process_xstart(x0):
            if denoised_fn is not None:
                x0 = denoised_fn(x0)
            return x0.clamp(-1, 1) if clip_denoised else x0

        pred_xstart = process_xstart(self._predict_xstart(x, t, model_output))
        model_mean, _, _ = self.q_posterior_mean_variance(x_start=pred_xstart, x_t=x, t=t)
        return {
            "mean": model_mean,
            "variance": model_variance,
            "log_variance": model_log_variance,
            "pred_xstart": pred_xstart,
            "extra": extra,
        }

    def _log_variance(self, model_var_values, min_log, max_log):
        """A reverse step's log-variance between the posterior's (min_log) and beta's (max_log): the model's own
        output (LEARNED), interpolated by it from [-1, 1] (IDDPM's LEARNED_RANGE), or one of the two fixed ones."""
        if self.model_var_type == ModelVarType.LEARNED:
            return model_var_values
        if self.model_var_type == ModelVarType.LEARNED_RANGE:
            frac = (model_var_values + 1) / 2
            return frac * max_log + (1 - frac) * min_log
        return max_log if self.model_var_type == ModelVarType.FIXED_LARGE else min_log

    def _predict_xstart(self, x_t, t, model_output):
        """x_0 from the model's output at timesteps t (B,) or (B, N), whatever it predicts."""
        if self.model_mean_type == ModelMeanType.START_X:
            return model_output
        if self.model_mean_type == ModelMeanType.VELOCITY:
            return (_extract(self.sqrt_alphas_cumprod, t, x_t.shape) * x_t
                    - _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * model_output)
        return (
            _extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
            - _extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * model_output
        )

    # ------------------------------------------------------------------ per-frame (VTV) sampling

    def _levels_alpha_bar(self, levels, x):
        """alpha_bar of base-scale levels (B, N), -1 = clean (alpha_bar 1), in float64 then broadcast."""
        table = self.base_alphas_cumprod_with_clean.to(levels.device)
        return frame_view(table[levels + 1], x)

    def vtv_step(self, model, x, level_from, level_to, *, method="ddim", eta=0.0, model_kwargs=None,
                 clip_denoised=False, denoised_fn=None, noise=None, model_input=None, model_timesteps=None,
                 generator=None):
        """Move every frame from its level to its next one (base-scale timesteps (B, N), -1 = clean).

        Frames whose level does not change are returned untouched. For a pair of neighbouring levels of a
        respaced grid this is exactly the respaced DDIM / DDPM step; larger per-frame jumps use the
        closed-form q(x_s | x_t, x_0) of the base process.
        """
        model_kwargs = model_kwargs or {}
        if method not in ("ddim", "ddpm"):
            raise ValueError(f"sample_method must be 'ddim' or 'ddpm', got {method!r}")
        if (level_to > level_from).any():
            frame = (level_to > level_from).nonzero()[0].tolist()
            raise ValueError(f"levels must not increase: sample {frame[0]} frame {frame[1]} goes "
                             f"{level_from[tuple(frame)].item()} -> {level_to[tuple(frame)].item()}")
        model_input = x if model_input is None else model_input
        model_timesteps = level_from.clamp(min=0) if model_timesteps is None else model_timesteps
        C = x.shape[2]
        model_output = model(model_input, model_timesteps, **model_kwargs)
        if isinstance(model_output, tuple):
            model_output = model_output[0]
        model_output = model_output.float()
        model_var_values = None
        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            model_output, model_var_values = torch.split(model_output, C, dim=2)

        x64 = model_input.double()
        alpha_bar_t = self._levels_alpha_bar(level_from, x)
        alpha_bar_s = self._levels_alpha_bar(level_to, x)
        moving = frame_view(level_to < level_from, x)
        # Frames that do not move may be clean (alpha_bar 1); keep their denominators away from 0.
        one_minus_t = torch.where(moving, 1 - alpha_bar_t, torch.ones_like(alpha_bar_t))
        if self.model_mean_type == ModelMeanType.START_X:
            pred_xstart = model_output.double()
        elif self.model_mean_type == ModelMeanType.VELOCITY:
            pred_xstart = alpha_bar_t.sqrt() * x64 - (1 - alpha_bar_t).sqrt() * model_output.double()
        else:
            pred_xstart = (x64 - (1 - alpha_bar_t).sqrt() * model_output.double()) / alpha_bar_t.sqrt()
        if denoised_fn is not None:
            pred_xstart = denoised_fn(pred_xstart.to(x.dtype)).double()
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        eps = (x64 - alpha_bar_t.sqrt() * pred_xstart) / one_minus_t.sqrt()

        if noise is None:
            noise = randn_like(x, generator)
        noise = noise.double()
        if method == "ddim":
            sigma = eta * ((1 - alpha_bar_s) / one_minus_t).sqrt() * (1 - alpha_bar_t / alpha_bar_s).sqrt()
            x_next = alpha_bar_s.sqrt() * pred_xstart + (1 - alpha_bar_s - sigma**2).clamp(min=0).sqrt() * eps
            x_next = x_next + sigma * noise
        else:
            alpha_ts = alpha_bar_t / alpha_bar_s  # alpha of the jump t -> s
            beta_ts = 1 - alpha_ts
            mean = (alpha_bar_s.sqrt() * beta_ts / one_minus_t) * pred_xstart + (
                alpha_ts.sqrt() * (1 - alpha_bar_s) / one_minus_t
            ) * x64
            posterior_variance = beta_ts * (1 - alpha_bar_s) / one_minus_t
            min_log = posterior_variance.clamp(min=1e-20).log()
            max_log = beta_ts.clamp(min=1e-20).log()
            var_values = model_var_values.double() if model_var_values is not None else None
            log_variance = self._log_variance(var_values, min_log, max_log).expand_as(mean)
            to_clean = frame_view(level_to < 0, x)
            x_next = mean + torch.where(to_clean, 0.0, 1.0) * (0.5 * log_variance).exp() * noise
        return torch.where(moving, x_next.to(x.dtype), x)

    # ------------------------------------------------------------------ training

    def _vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None):
        """VLB term per sample in bits/dim: KL to the true posterior, or decoder NLL for frames at t = 0."""
        true_mean, _, true_log_variance_clipped = self.q_posterior_mean_variance(x_start=x_start, x_t=x_t, t=t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        kl = normal_kl(true_mean, true_log_variance_clipped, out["mean"], out["log_variance"])
        kl = kl.flatten(2).mean(dim=2) / np.log(2.0)  # (B, N)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"]
        )
        decoder_nll = decoder_nll.flatten(2).mean(dim=2) / np.log(2.0)  # (B, N)
        frame_t = t if t.ndim == 2 else t[:, None].expand_as(kl)
        output = torch.where(frame_t == 0, decoder_nll, kl).mean(dim=1)  # (B,)
        return {"output": output, "pred_xstart": out["pred_xstart"]}

    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None, min_snr_gamma=None):
        """Loss terms per sample (B,) for x_start (B, N, C, H, W) noised per frame to t (B,) or (B, N).

        min_snr_gamma: weight each frame's MSE by Min-SNR-gamma (Hang et al. 2023) of its own timestep, which caps
        the weight of nearly clean frames. "mse" stays the unweighted MSE; "loss" uses the weighted one.
        """
        model_kwargs = model_kwargs or {}
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise=noise)
        terms = {}

        if self.loss_type.is_vb():
            terms["loss"] = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised=False,
                                               model_kwargs=model_kwargs)["output"]
            if self.loss_type == LossType.RESCALED_KL:
                terms["loss"] = terms["loss"] * self.num_timesteps
            return terms

        model_output = model(x_t, t, **model_kwargs)
        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            B, N, C = x_t.shape[:3]
            assert model_output.shape == (B, N, C * 2, *x_t.shape[3:])
            model_output, model_var_values = torch.split(model_output, C, dim=2)
            # The VLB only trains the variance: the mean enters detached (IDDPM).
            frozen_out = torch.cat([model_output.detach(), model_var_values], dim=2)
            terms["vb"] = self._vb_terms_bpd(lambda *args, r=frozen_out: r, x_start, x_t, t,
                                             clip_denoised=False)["output"]
            if self.loss_type == LossType.RESCALED_MSE:
                terms["vb"] = terms["vb"] * self.num_timesteps / 1000.0

        target = {
            ModelMeanType.PREVIOUS_X: lambda: self.q_posterior_mean_variance(x_start=x_start, x_t=x_t, t=t)[0],
            ModelMeanType.START_X: lambda: x_start,
            ModelMeanType.EPSILON: lambda: noise,
            ModelMeanType.VELOCITY: lambda: (_extract(self.sqrt_alphas_cumprod, t, x_t.shape) * noise
                                             - _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * x_start),
        }[self.model_mean_type]()
        assert model_output.shape == target.shape == x_start.shape
        frame_mse = ((target - model_output.float()) ** 2).mean(dim=(2, 3, 4))  # (B, N)
        terms["mse"] = frame_mse.mean(dim=1)
        if min_snr_gamma is None:
            mse_loss = terms["mse"]
        else:
            mse_loss = (frame_mse * self.min_snr_weights(t, min_snr_gamma)).mean(dim=1)
        terms["loss"] = mse_loss + terms["vb"] if "vb" in terms else mse_loss
        return terms

    def min_snr_weights(self, t, gamma):
        """Min-SNR loss weights for timesteps t (B,) or (B, N), shaped (B, 1) or (B, N): min(SNR, gamma) for an
        x_start target, divided by SNR for an epsilon target (whose error costs SNR times less in x_start) and by
        SNR + 1 for a v target (SNR + 1 times less)."""
        if not gamma > 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {gamma}")
        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            raise ValueError("min_snr_gamma is defined for epsilon and x_start prediction, not previous_x")
        alpha_bar = self.alphas_cumprod.to(t.device)[t]
        snr = alpha_bar / (1.0 - alpha_bar)
        weights = snr.clamp(max=gamma)
        if self.model_mean_type == ModelMeanType.EPSILON:
            weights = weights / snr
        elif self.model_mean_type == ModelMeanType.VELOCITY:
            weights = weights / (snr + 1)
        return weights.float() if t.ndim == 2 else weights.float()[:, None]
