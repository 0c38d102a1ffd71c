"""Stage 1: train a per-frame AutoencoderKL on a video dataset; the FVDM then trains in its latent space.

    python tools/train_autoencoder.py --config configs/sky/sky_autoencoder.yaml [key=value ...]
    torchrun --nproc_per_node 8 tools/train_autoencoder.py --config configs/sky/sky_autoencoder.yaml
    python tools/encode_latents.py --config configs/sky/sky_train.yaml --out cache/sky vae=results/sky-autoencoder/vae
    python train_video.py --config configs/sky/sky_train.yaml vae=results/sky-autoencoder/vae latent_cache_dir=cache/sky

The run writes <results_dir>/<experiment_name>/vae/ (config.json + safetensors, with the latent scale measured on
the training clips) and reconstruction.json (held-out PSNR / SSIM). resume_from_checkpoint=auto (the default)
continues a killed run exactly; a finished run only re-exports. The loop is training.autoencoder.train_autoencoder.
"""
from configs import parse_command_line
from training.autoencoder import train_autoencoder
from training.autoencoder_config import AutoencoderConfig, load_autoencoder_config


def main(argv=None):
    train_autoencoder(parse_command_line(AutoencoderConfig, load_autoencoder_config, __doc__, argv))


if __name__ == "__main__":
    main()
