"""Export any checkpoint the sampler reads as a Hugging Face model folder (Latte.from_pretrained, FVDMPipeline).

    python tools/export_pretrained.py --out results/demo/pretrained ckpt=results/demo/checkpoints
    python tools/export_pretrained.py --out latte-ffs ckpt=ffs.pt model=Latte-XL/2 image_size=256 num_frames=16 \\
        num_classes=0 learn_sigma=true vae=sd-vae-ft-ema          # a released Latte / FVDM checkpoint

Keys are the sampling config's (sample/config.py): ckpt (a <step>.pt, <step>-ema.safetensors, a run's
checkpoints/ folder or a converted .pt), weights (ema | model), and for a checkpoint that stores no training config
the model keys. Training writes <run>/pretrained/ itself at its last step; this is for any other checkpoint.
The folder holds config.json, diffusion_pytorch_model.safetensors and training_config.json (the settings the
sampler needs: diffusion, image size, VAE and text encoder paths).
"""
import argparse

from sample.config import load_config
from sample.sampling import DIFFUSION_DEFAULTS, MODEL_KEYS, load_model_for_sampling


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the model folder to write")
    args, overrides = parser.parse_known_args(argv)
    cfg = load_config(None, overrides)
    if cfg.ckpt is None:
        raise ValueError("config key 'ckpt' must name the checkpoint to export")
    model, _, settings = load_model_for_sampling(cfg)
    training_config = {**settings["training_config"],
                       **{key: settings[key] for key in (*MODEL_KEYS, *DIFFUSION_DEFAULTS, "vae")}}
    text_encoder = settings["text_encoder"]
    if text_encoder is not None:
        training_config.update(text_encoder=cfg.text_encoder or training_config["text_encoder"],
                               text_max_length=text_encoder.max_length)
    model.save_pretrained(args.out, training_config=training_config)
    print(f"wrote {args.out} ({settings['model']}, {sum(p.numel() for p in model.parameters()):,} parameters) "
          f"from {settings['ckpt']}")


if __name__ == "__main__":
    main()
