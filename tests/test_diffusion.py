"""Per-frame Gaussian diffusion against diffusers' schedulers, closed forms, and per-frame consistency."""
import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from scipy.stats import norm

from diffusion import create_diffusion, draw_timesteps, sample_frame_timesteps, vtv

SHAPE = (2, 4, 3, 8, 8)  # (B, N, C, H, W)


def toy_eps(x, t):
    """A fixed noise predictor that depends on x and on the (base-scale) timestep of each frame."""
    t = t.float()
    while t.ndim < x.ndim:
        t = t[..., None]
    return 0.6 * torch.tanh(x) * torch.cos(t / 300.0) + 0.2 * torch.sin(t / 70.0)


class ToyModel(torch.nn.Module):
    def __init__(self, learn_sigma=False):
        super().__init__()
        self.learn_sigma = learn_sigma
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, x, t, y=None):
        eps = toy_eps(x, t)
        if self.learn_sigma:
            return torch.cat([eps, torch.tanh(0.5 * x)], dim=2)
        return eps


def reference_alphas_cumprod():
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return np.cumprod(1 - betas)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def exact_table(scheduler):
    """Run diffusers' update rule in float64: its float32 tables carry ~6e-5 relative error by t = 999 (float32
    cumprod) and ~4e-4 in 1 - alpha_bar_t / alpha_bar_{t-1} at t <= 2 (cancellation)."""
    scheduler.alphas_cumprod = torch.from_numpy(reference_alphas_cumprod())
    scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return scheduler


def test_q_sample_matches_diffusers_add_noise():
    diffusion = create_diffusion("")
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    x0, noise = torch.randn(SHAPE), torch.randn(SHAPE)
    t = torch.tensor([3, 731])
    ours = diffusion.q_sample(x0, t, noise=noise)
    theirs = scheduler.add_noise(x0, noise, t)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_vector_q_sample_is_scalar_q_sample_per_frame():
    diffusion = create_diffusion("")
    x0, noise = torch.randn(SHAPE), torch.randn(SHAPE)
    t = torch.tensor([[0, 17, 500, 999], [250, 250, 1, 998]])
    ours = diffusion.q_sample(x0, t, noise=noise)
    for b in range(SHAPE[0]):
        for i in range(SHAPE[1]):
            scalar = diffusion.q_sample(x0[b : b + 1], t[b, i : i + 1], noise=noise[b : b + 1])
            torch.testing.assert_close(ours[b, i], scalar[0, i], atol=0, rtol=0)


def diffusers_ddim(noise, num_steps, eta=0.0):
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=False,
        set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0,
    )
    exact_table(scheduler).set_timesteps(num_steps)
    x = noise.double()
    for t in scheduler.timesteps:
        x = scheduler.step(toy_eps(x, t.expand(x.shape[0])), t, x, eta=eta).prev_sample
    return x.float(), scheduler.timesteps


def test_ddim50_standard_preset_matches_diffusers():
    diffusion = create_diffusion("ddim50", learn_sigma=False)
    noise = torch.randn(SHAPE)
    _, (ours,) = vtv.sample_video(diffusion, ToyModel(), "standard", SHAPE, noise_fn=lambda num: noise)
    theirs, timesteps = diffusers_ddim(noise, 50)
    assert timesteps.tolist() == list(range(980, -1, -20))
    assert diffusion.sampling_timesteps == list(range(0, 1000, 20))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_vtv_loop_with_uniform_schedule_matches_diffusers_ddim():
    diffusion = create_diffusion("ddim50", learn_sigma=False)
    noise = torch.randn(SHAPE)
    levels = diffusion.sampling_timesteps[::-1] + [-1]
    schedule = torch.tensor(levels)[:, None].expand(-1, SHAPE[1])  # (S + 1, N)
    ours = vtv.sample_window(diffusion, ToyModel(), SHAPE, schedule, method="ddim", noise=noise)
    theirs, _ = diffusers_ddim(noise, 50)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_ddpm_steps_match_diffusers_fixed_small():
    """Single ancestral steps from the same x_t with the same noise (diffusers in float64: see exact_table)."""
    diffusion = create_diffusion("", learn_sigma=False, sigma_small=True)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                              variance_type="fixed_small", clip_sample=False)
    exact_table(scheduler).set_timesteps(1000)
    x = torch.randn(SHAPE)
    for step in (999, 640, 100, 2, 1, 0):
        t = torch.full((SHAPE[0],), step)
        x64 = x.double()
        theirs = scheduler.step(toy_eps(x64, t), step, x64, generator=torch.Generator().manual_seed(step)).prev_sample
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(step), dtype=torch.float64)  # diffusers' draw
        level_from, level_to = torch.full(SHAPE[:2], step), torch.full(SHAPE[:2], step - 1)
        ours = diffusion.vtv_step(ToyModel(), x, level_from, level_to, method="ddpm", noise=z.float())
        torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=1e-5)


def test_v_prediction_steps_match_diffusers():
    """A v-predicting model (here v built from the toy eps and x_t) steps as diffusers' v_prediction schedulers:
    DDPM single steps and the DDIM-50 loop."""
    diffusion = create_diffusion("", learn_sigma=False, sigma_small=True, prediction_type="v")
    ab = torch.tensor(reference_alphas_cumprod(), dtype=torch.float64)

    def toy_v(x, t):  # the v of the toy eps: sqrt(ab) eps - sqrt(1 - ab) x0 = (eps - sqrt(1 - ab) x) / sqrt(ab)
        a = ab[t].to(x.dtype)
        while a.ndim < x.ndim:
            a = a[..., None]
        return (toy_eps(x, t) - (1 - a).sqrt() * x) / a.sqrt()

    class VelocityModel(ToyModel):
        def forward(self, x, t, y=None):
            return toy_v(x, t)

    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                              variance_type="fixed_small", clip_sample=False, prediction_type="v_prediction")
    exact_table(scheduler).set_timesteps(1000)
    x = torch.randn(SHAPE)
    for step in (999, 640, 100, 1, 0):
        t = torch.full((SHAPE[0],), step)
        x64 = x.double()
        theirs = scheduler.step(toy_v(x64, t), step, x64, generator=torch.Generator().manual_seed(step))
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(step), dtype=torch.float64)
        level_from, level_to = torch.full(SHAPE[:2], step), torch.full(SHAPE[:2], step - 1)
        ours = diffusion.vtv_step(VelocityModel(), x, level_from, level_to, method="ddpm", noise=z.float())
        torch.testing.assert_close(ours, theirs.prev_sample.float(), atol=1e-5, rtol=1e-5)
        if step > 0:  # p_mean_variance (the VLB's path): the posterior mean at diffusers' x0 estimate
            mean = diffusion.p_mean_variance(VelocityModel(), x, t, clip_denoised=False)["mean"]
            x0 = theirs.pred_original_sample
            coef1 = scheduler.betas[step] * ab[step - 1].sqrt() / (1 - ab[step])
            coef2 = (1 - ab[step - 1]) * (1 - scheduler.betas[step]).sqrt() / (1 - ab[step])
            torch.testing.assert_close(mean.double(), coef1 * x0 + coef2 * x64, atol=1e-5, rtol=1e-5)

    ddim = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                         clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0,
                         prediction_type="v_prediction")
    exact_table(ddim).set_timesteps(50)
    noise = torch.randn(SHAPE)
    theirs = noise.double()
    for t in ddim.timesteps:
        theirs = ddim.step(toy_v(theirs, t.expand(SHAPE[0])), t, theirs).prev_sample
    _, (ours,) = vtv.sample_video(create_diffusion("ddim50", learn_sigma=False, prediction_type="v"),
                                  VelocityModel(), "standard", SHAPE, noise_fn=lambda num: noise)
    torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=1e-5)


def test_unknown_prediction_type_is_an_error():
    with pytest.raises(ValueError, match="prediction_type"):
        create_diffusion("", prediction_type="sample")


def test_ddpm_jump_is_the_exact_gaussian_posterior():
    """A per-frame DDPM jump t -> s equals Gaussian conditioning of the joint (x_s, x_t) given x_0."""
    diffusion = create_diffusion("", learn_sigma=False, sigma_small=True)

    class StartPredictor(ToyModel):  # eps consistent with a known x0 so the posterior is conditioned on it
        def forward(self, x, t, y=None):
            ab = torch.tensor(reference_alphas_cumprod(), dtype=torch.float64)[t].float()[..., None, None, None]
            return (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    x0 = torch.randn(1, 3, 2, 4, 4)
    x_t = torch.randn_like(x0)
    level_from, level_to = torch.tensor([[900, 400, 50]]), torch.tensor([[300, 399, -1]])
    z = torch.randn_like(x0)
    out = diffusion.vtv_step(StartPredictor(), x_t, level_from, level_to, method="ddpm", noise=z)
    alphas_cumprod = reference_alphas_cumprod()
    for i in range(3):
        t, s = level_from[0, i].item(), level_to[0, i].item()
        ab_t, ab_s = alphas_cumprod[t], (alphas_cumprod[s] if s >= 0 else 1.0)
        # joint covariance of (x_s, x_t) given x0, per element: x_t = sqrt(ab_t/ab_s) x_s + noise
        a = math.sqrt(ab_t / ab_s)
        var_s, var_t = 1 - ab_s, 1 - ab_t
        cov_st = a * var_s
        mean = math.sqrt(ab_s) * x0[0, i] + cov_st / var_t * (x_t[0, i] - math.sqrt(ab_t) * x0[0, i])
        variance = var_s - cov_st**2 / var_t
        expected = mean + math.sqrt(max(variance, 0.0)) * z[0, i]
        torch.testing.assert_close(out[0, i], expected.float(), atol=1e-4, rtol=1e-4)


def test_vtv_step_mixed_levels_equals_per_frame_scalar_steps():
    """With a frame-local predictor, one mixed-level step equals each frame stepped alone."""
    diffusion = create_diffusion("ddim25", learn_sigma=False)
    grid = diffusion.sampling_timesteps
    x, z = torch.randn(SHAPE), torch.randn(SHAPE)
    level_from = torch.tensor([[grid[24], grid[10], grid[10], -1], [grid[3], grid[0], grid[20], grid[5]]])
    level_to = torch.tensor([[grid[23], grid[9], grid[10], -1], [grid[1], -1, grid[19], grid[4]]])
    for method in ("ddim", "ddpm"):
        mixed = diffusion.vtv_step(ToyModel(), x, level_from, level_to, method=method, eta=0.5, noise=z)
        for b in range(SHAPE[0]):
            for i in range(SHAPE[1]):
                single = diffusion.vtv_step(ToyModel(), x[b : b + 1], level_from[b : b + 1, i].expand(1, SHAPE[1]),
                                            level_to[b : b + 1, i].expand(1, SHAPE[1]), method=method, eta=0.5,
                                            noise=z[b : b + 1])
                torch.testing.assert_close(mixed[b, i], single[0, i], atol=1e-6, rtol=1e-6)
        assert torch.equal(mixed[0, 2], x[0, 2]) and torch.equal(mixed[0, 3], x[0, 3])  # frames that wait


def test_vtv_step_respaced_ddpm_learned_sigma_equals_iddpm_step():
    """The closed-form jump between neighbouring grid levels is IDDPM's respaced ancestral step, written here from
    the respaced tables: x0 from eps, the posterior mean, the learned-range log-variance, no noise at index 0."""
    diffusion = create_diffusion("50")
    grid = diffusion.sampling_timesteps
    x = torch.randn(SHAPE)
    model = ToyModel(learn_sigma=True)
    for index in (37, 0):
        z = torch.randn_like(x)
        eps, var_values = model(x, torch.full(SHAPE[:2], grid[index])).double().split(SHAPE[2], dim=2)
        x0 = diffusion.sqrt_recip_alphas_cumprod[index] * x - diffusion.sqrt_recipm1_alphas_cumprod[index] * eps
        mean = diffusion.posterior_mean_coef1[index] * x0 + diffusion.posterior_mean_coef2[index] * x
        frac = (var_values + 1) / 2
        log_variance = (frac * diffusion.log_betas[index]
                        + (1 - frac) * diffusion.posterior_log_variance_clipped[index])
        expected = mean + (index != 0) * (0.5 * log_variance).exp() * z
        level_to = torch.full(SHAPE[:2], grid[index - 1] if index else -1)
        ours = diffusion.vtv_step(model, x, torch.full(SHAPE[:2], grid[index]), level_to, method="ddpm", noise=z)
        torch.testing.assert_close(ours, expected.float(), atol=1e-5, rtol=1e-5)


def test_vlb_term_equals_closed_form_gaussian_kl():
    diffusion = create_diffusion("")
    model = ToyModel(learn_sigma=True)
    x0, noise = torch.randn(SHAPE).clamp(-1, 1), torch.randn(SHAPE)
    t = torch.tensor([[5, 999, 400, 400], [1, 2, 3, 600]])
    terms = diffusion.training_losses(model, x0, t, noise=noise)

    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    alphas_cumprod = np.cumprod(1 - betas)
    x0_, noise_ = x0.double().numpy(), noise.double().numpy()
    expected_vb, expected_mse = [], []
    for b in range(SHAPE[0]):
        frame_kl, frame_mse = [], []
        for i in range(SHAPE[1]):
            step = t[b, i].item()
            ab, ab_prev = alphas_cumprod[step], alphas_cumprod[step - 1]
            x_t = math.sqrt(ab) * x0_[b, i] + math.sqrt(1 - ab) * noise_[b, i]
            out = model(torch.from_numpy(x_t)[None, None].float(), torch.tensor([[step]])).double().numpy()[0, 0]
            eps, v = out[:3], out[3:]
            posterior_var = betas[step] * (1 - ab_prev) / (1 - ab)
            true_mean = (math.sqrt(ab_prev) * betas[step] * x0_[b, i] + math.sqrt(1 - betas[step]) * (1 - ab_prev) * x_t) / (1 - ab)
            pred_x0 = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
            model_mean = (math.sqrt(ab_prev) * betas[step] * pred_x0 + math.sqrt(1 - betas[step]) * (1 - ab_prev) * x_t) / (1 - ab)
            frac = (v + 1) / 2
            model_log_var = frac * math.log(betas[step]) + (1 - frac) * math.log(posterior_var)
            kl = 0.5 * (model_log_var - math.log(posterior_var) + posterior_var / np.exp(model_log_var)
                        + (true_mean - model_mean) ** 2 / np.exp(model_log_var) - 1)
            frame_kl.append(kl.mean() / math.log(2))
            frame_mse.append(((noise_[b, i] - eps) ** 2).mean())
        expected_vb.append(np.mean(frame_kl))
        expected_mse.append(np.mean(frame_mse))
    torch.testing.assert_close(terms["vb"].double(), torch.tensor(expected_vb), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(terms["mse"].double(), torch.tensor(expected_mse), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])


@pytest.mark.parametrize("prediction_type", ["epsilon", "x_start", "v"])
def test_min_snr_weights_each_frame_by_its_own_timestep(prediction_type):
    """Min-SNR-5 against diffusers' compute_snr: weights min(SNR, 5) / SNR for eps targets, min(SNR, 5) for x_start
    and min(SNR, 5) / (SNR + 1) for v, whose target is diffusers' get_velocity."""
    from diffusers.training_utils import compute_snr

    diffusion = create_diffusion("", learn_sigma=False, prediction_type=prediction_type)
    model = ToyModel()
    x0, noise = torch.randn(SHAPE).clamp(-1, 1), torch.randn(SHAPE)
    t = torch.tensor([[0, 999, 400, 400], [1, 20, 150, 600]])
    plain = diffusion.training_losses(model, x0, t, noise=noise)
    weighted = diffusion.training_losses(model, x0, t, noise=noise, min_snr_gamma=5.0)

    scheduler = exact_table(DDPMScheduler())
    snr = compute_snr(scheduler, t.flatten()).view(t.shape).double()
    weights = snr.clamp(max=5.0) / {"epsilon": snr, "x_start": 1.0, "v": snr + 1}[prediction_type]
    x_t = diffusion.q_sample(x0, t, noise=noise)
    velocity = torch.stack([scheduler.get_velocity(x0[:, i].double(), noise[:, i].double(), t[:, i])
                            for i in range(SHAPE[1])], dim=1).float()
    target = {"epsilon": noise, "x_start": x0, "v": velocity}[prediction_type]
    frame_mse = ((model(x_t, t) - target) ** 2).double().mean(dim=(2, 3, 4))  # (B, N)
    torch.testing.assert_close(weighted["loss"].double(), (weights * frame_mse).mean(1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(weighted["mse"], plain["mse"])  # the logged MSE stays unweighted
    scalar = diffusion.training_losses(model, x0, t[:, 2], noise=noise, min_snr_gamma=5.0)  # (B,) timesteps
    shared = diffusion.training_losses(model, x0, t[:, 2:3].expand(-1, 4), noise=noise, min_snr_gamma=5.0)
    torch.testing.assert_close(scalar["loss"], shared["loss"])
    with pytest.raises(ValueError, match="min_snr_gamma"):
        diffusion.training_losses(model, x0, t, noise=noise, min_snr_gamma=0.0)


def test_frames_at_t0_use_decoder_nll():
    """Frames at t = 0 take the discretized-Gaussian NLL (checked against scipy's exact normal CDF)."""
    diffusion = create_diffusion("")
    model = ToyModel(learn_sigma=True)
    x0 = (torch.randint(0, 256, (1, 2, 3, 8, 8)).float() / 127.5 - 1)
    noise = torch.randn_like(x0)
    terms_mixed = diffusion.training_losses(model, x0, torch.tensor([[0, 300]]), noise=noise)
    terms_kl = diffusion.training_losses(model, x0[:, 1:], torch.tensor([[300]]), noise=noise[:, 1:])
    nll_frame0 = 2 * terms_mixed["vb"].item() - terms_kl["vb"].item()

    x_t = diffusion.q_sample(x0[:, :1], torch.tensor([[0]]), noise=noise[:, :1])
    out = diffusion.p_mean_variance(model, x_t, torch.tensor([[0]]), clip_denoised=False)
    mean, std = out["mean"].double().numpy(), np.exp(0.5 * out["log_variance"].double().numpy())
    x = x0[:, :1].double().numpy()
    upper = np.where(x > 0.999, 1.0, norm.cdf((x + 1 / 255 - mean) / std))
    lower = np.where(x < -0.999, 0.0, norm.cdf((x - 1 / 255 - mean) / std))
    expected = -np.log(np.clip(upper - lower, 1e-12, None)).mean() / math.log(2)
    assert nll_frame0 == pytest.approx(expected, rel=2e-2)


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal"])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_ptss_share_of_shared_timesteps(p, distribution):
    generator = torch.Generator().manual_seed(0)
    n = 10_000
    t = sample_frame_timesteps(n, 16, p, generator=generator, distribution=distribution)
    assert t.shape == (n, 16) and t.dtype == torch.int64 and t.min() >= 0 and t.max() < 1000
    shared = (t == t[:, :1]).all(dim=1).float().mean().item()
    # an independent draw of 16 frames is all-equal with probability 1000**-15: negligible
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(shared - (1 - p)) <= 4 * sigma + 1e-12


def test_ptss_independent_frames_are_uniform_and_batch_granularity():
    t = sample_frame_timesteps(20_000, 8, 1.0, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(t.flatten(), minlength=1000).double()
    expected = t.numel() / 1000
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 999 + 4 * math.sqrt(2 * 999)  # chi-square with 999 degrees of freedom, within 4 sigma
    batch = [sample_frame_timesteps(64, 8, 0.5, generator=torch.Generator().manual_seed(s), granularity="batch")
             for s in range(200)]
    per_batch = [(b == b[:, :1]).all(dim=1) for b in batch]
    assert all(m.all() or not m.any() for m in per_batch)  # one coin for the whole batch
    share = np.mean([m.all().item() for m in per_batch])
    assert abs(share - 0.5) < 4 * math.sqrt(0.25 / 200)
    with pytest.raises(ValueError, match="ptss_p"):
        sample_frame_timesteps(2, 4, 1.5)


@pytest.mark.parametrize("logit_mean, logit_std", [(0.0, 1.0), (-0.3, 1.0), (0.5, 0.6)])
def test_logit_normal_timesteps_follow_their_closed_form_cdf(logit_mean, logit_std):
    """P(t <= k) = Phi((logit((k + 1) / T) - mean) / std) for t = floor(T * sigmoid(mean + std * z))."""
    n, num_timesteps = 200_000, 1000
    t = draw_timesteps((n,), num_timesteps, "logit_normal", logit_mean, logit_std,
                       generator=torch.Generator().manual_seed(3))
    assert t.dtype == torch.int64 and t.min() >= 0 and t.max() < num_timesteps
    for k in (49, 199, 399, 599, 799, 949):
        q = (k + 1) / num_timesteps
        expected = norm.cdf((math.log(q / (1 - q)) - logit_mean) / logit_std)
        observed = (t <= k).double().mean().item()
        assert abs(observed - expected) <= 4 * math.sqrt(expected * (1 - expected) / n) + 1e-9, k
    with pytest.raises(ValueError, match="timestep distribution"):
        draw_timesteps((2,), num_timesteps, "lognormal")


def test_vtv_sample_loop_holds_conditioning_frames_exactly():
    diffusion = create_diffusion("ddim10")
    grid = diffusion.sampling_timesteps[::-1] + [-1]
    cond = torch.randn(SHAPE)
    cond_mask = torch.tensor([[True, False, False, True], [False, True, False, False]])
    schedule = torch.tensor(grid)[:, None, None].expand(-1, *SHAPE[:2]).clone()
    schedule[:, cond_mask] = -1
    for method, noise_level in (("ddim", 0), ("ddpm", 30)):
        out = vtv.sample_window(diffusion, ToyModel(learn_sigma=True), SHAPE, schedule, method=method,
                                        cond_frames=cond, cond_mask=cond_mask, cond_noise_level=noise_level)
        assert torch.equal(out[cond_mask], cond[cond_mask])
        assert not torch.allclose(out[~cond_mask], cond[~cond_mask])


def test_vtv_sample_loop_rejects_bad_schedules():
    diffusion = create_diffusion("ddim10")
    model = ToyModel()
    ok = torch.tensor([[900, 900], [400, 400], [-1, -1]])
    with pytest.raises(ValueError, match="rises at step 0 for sample 0 frame 1"):
        vtv.sample_window(diffusion, model, (1, 2, 3, 4, 4), torch.tensor([[900, 400], [400, 900], [-1, -1]]))
    with pytest.raises(ValueError, match="frame 1 does not"):
        vtv.sample_window(diffusion, model, (1, 2, 3, 4, 4), torch.tensor([[900, 900], [-1, 400]]))
    with pytest.raises(ValueError, match=r"\[-1, 999\]"):
        vtv.sample_window(diffusion, model, (1, 2, 3, 4, 4), ok * 2)
    with pytest.raises(ValueError, match="frame 0: a frame is clean at the first step"):
        vtv.sample_window(diffusion, model, (1, 2, 3, 4, 4), torch.tensor([[-1, 900], [-1, 400], [-1, -1]]))
    with pytest.raises(ValueError, match=r"\(S\+1, 3\)"):
        vtv.sample_window(diffusion, model, (1, 3, 3, 4, 4), ok)


def test_per_sample_generators_make_ddpm_samples_independent_of_batching():
    diffusion = create_diffusion("ddim10")
    schedule = torch.tensor(diffusion.sampling_timesteps[::-1] + [-1])[:, None].expand(-1, SHAPE[1])
    model = ToyModel(learn_sigma=True)

    def run(seeds):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        shape = (len(seeds), *SHAPE[1:])
        return vtv.sample_window(diffusion, model, shape, schedule, method="ddpm", generator=generators)

    together = run([3, 4])
    torch.testing.assert_close(together[1:], run([4]), atol=1e-6, rtol=1e-6)
    assert not torch.allclose(together[0], together[1])
