"""Sample videos from an FVDM with any VTV preset (diffusion/vtv.py).

    python sample/generate.py --config configs/sky/sky_sample.yaml [key=value ...]
    python sample/generate.py --config configs/demo/demo_sample.yaml preset=i2v image=face.png

Each video is written to <save_dir>/<preset>/<video:04d>/: frames/<frame:04d>.png, video.mp4, video.gif,
contact_sheet.png and schedule.png (the per-frame noise levels, frames x steps). It samples through
sample/pipeline.py's FVDMPipeline, which Python callers use directly.
"""

import torch

from configs import parse_command_line
from diffusion import vtv
from sample.config import SampleConfig, load_config
from sample.pipeline import FVDMPipeline
from sample.sampling import sample_preset
from tools.runtime import allow_tf32


@torch.no_grad()
def main(argv=None):
    cfg = parse_command_line(SampleConfig, load_config, __doc__, argv)
    allow_tf32(cfg.allow_tf32)
    pipe = FVDMPipeline.from_config(cfg)
    for preset in vtv.PRESETS if cfg.preset == "all" else (cfg.preset,):
        cfg.preset = preset
        sample_preset(cfg, pipe)


if __name__ == "__main__":
    main()
