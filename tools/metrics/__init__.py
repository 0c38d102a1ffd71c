"""Video generation metrics with StyleGAN-V's protocols, offline: FVD, FID, KID, video IS."""

from .frechet import feature_statistics, frechet_distance, inception_score, kernel_inception_distance
from .i3d import InceptionI3d, kinetics_400_classes, load_i3d, preprocess_clips
from .inception import load_inception
from .c3d import load_c3d
from .protocols import (
    PROTOCOLS,
    compute_fid,
    compute_frame_metrics,
    compute_fvd,
    compute_isv,
    compute_kid,
    compute_metrics,
    i3d_clip_features,
)

__all__ = [
    "PROTOCOLS", "InceptionI3d", "compute_fid", "compute_frame_metrics", "compute_fvd", "compute_isv", "compute_kid",
    "compute_metrics", "feature_statistics", "frechet_distance", "i3d_clip_features", "inception_score",
    "kernel_inception_distance", "kinetics_400_classes", "load_c3d", "load_i3d", "load_inception", "preprocess_clips",
]
