"""Train an FVDM (Latte backbone, per-frame timesteps sampled with PTSS) on video clips or their VAE latents.

    python train_video.py --config configs/sky/sky_train.yaml [key=value ...]          # one process
    torchrun --nproc_per_node 8 train_video.py --config configs/sky/sky_train.yaml    # DDP (NCCL on GPU, gloo on CPU)

A run lives in <results_dir>/<experiment_name>/: config.yaml, log.txt, metrics.jsonl, tensorboard/, checkpoints/,
preview/. resume_from_checkpoint=auto continues a killed run exactly where it stopped. The loop itself is
training.train(cfg), for use from Python.
"""
from configs import parse_command_line
from training import TrainConfig, load_config, train


def main(argv=None):
    train(parse_command_line(TrainConfig, load_config, __doc__, argv))


if __name__ == "__main__":
    main()
