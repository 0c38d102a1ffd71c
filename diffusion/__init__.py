"""Gaussian diffusion with per-frame timesteps; `create_diffusion` has DiT's signature and defaults, with
`prediction_type` in place of DiT's `predict_xstart`."""
from . import gaussian_diffusion as gd
from .respace import SpacedDiffusion, space_timesteps
from .timestep_sampler import TIMESTEP_DISTRIBUTIONS, draw_timesteps, sample_frame_timesteps

PREDICTION_TYPES = {"epsilon": gd.ModelMeanType.EPSILON, "x_start": gd.ModelMeanType.START_X,
                    "v": gd.ModelMeanType.VELOCITY}

__all__ = ["create_diffusion", "PREDICTION_TYPES", "draw_timesteps", "sample_frame_timesteps", "SpacedDiffusion",
           "space_timesteps", "TIMESTEP_DISTRIBUTIONS"]


def create_diffusion(
    timestep_respacing,
    noise_schedule="linear",
    use_kl=False,
    sigma_small=False,
    prediction_type="epsilon",
    learn_sigma=True,
    rescale_learned_sigmas=False,
    diffusion_steps=1000,
):
    """timestep_respacing: "" or None for all steps, "ddim50" / "250" / "10,20" to respace. prediction_type: what
    the model outputs, "epsilon" (the noise, DiT and Latte), "x_start" or "v" (sqrt(alpha_bar) * noise -
    sqrt(1 - alpha_bar) * x_0, Salimans & Ho 2022)."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {sorted(PREDICTION_TYPES)}, got {prediction_type!r}")
    betas = gd.get_named_beta_schedule(noise_schedule, diffusion_steps)
    if use_kl:
        loss_type = gd.LossType.RESCALED_KL
    elif rescale_learned_sigmas:
        loss_type = gd.LossType.RESCALED_MSE
    else:
        loss_type = gd.LossType.MSE
    if timestep_respacing is None or timestep_respacing == "":
        timestep_respacing = [diffusion_steps]
    return SpacedDiffusion(
        use_timesteps=space_timesteps(diffusion_steps, timestep_respacing),
        betas=betas,
        model_mean_type=PREDICTION_TYPES[prediction_type],
        model_var_type=(
            (gd.ModelVarType.FIXED_LARGE if not sigma_small else gd.ModelVarType.FIXED_SMALL)
            if not learn_sigma
            else gd.ModelVarType.LEARNED_RANGE
        ),
        loss_type=loss_type,
    )
