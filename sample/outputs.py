"""Writing sampled videos: uint8 conversion, PNG frames, MP4, GIF, contact sheets, VTV schedule heatmaps."""
import math
from pathlib import Path

import imageio_ffmpeg
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def _as_rgb(frames_uint8):
    """(N, H, W, C) uint8 with C = 1 or 3 -> (N, H, W, 3); encoders want RGB."""
    frames = np.asarray(frames_uint8)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 frames (N, H, W, 1|3), got {frames.dtype} {frames.shape}")
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def enlarge(frames_uint8, min_size):
    """(N, H, W, C) frames repeated pixel by pixel until the shorter side is at least min_size (tiny demo videos)."""
    zoom = math.ceil(min_size / min(frames_uint8.shape[1:3]))
    return frames_uint8.repeat(zoom, axis=1).repeat(zoom, axis=2) if zoom > 1 else frames_uint8


def save_gif(frames_uint8, path, fps=8, min_size=128):
    """Looping GIF, enlarged to min_size (pixel repetition) so tiny videos stay visible in a browser; Pillow
    quantizes each frame to 256 colours."""
    frames = enlarge(_as_rgb(frames_uint8), min_size)
    images = [Image.fromarray(frame) for frame in frames]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def save_png_frames(frames_uint8, folder, start_index=0, digits=4):
    """frames as <folder>/<index>.png, zero-padded so a sorted listing is frame order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for offset, frame in enumerate(np.asarray(frames_uint8)):
        image = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
        image.save(folder / f"{start_index + offset:0{digits}d}.png")


def contact_sheet(frames_uint8, columns=8, max_frames=64, border=2, min_size=64):
    """Frames tiled row by row (white border); at most max_frames, evenly spaced through the video.

    Frames smaller than min_size are enlarged by pixel repetition so tiny demo videos stay visible.
    """
    frames = _as_rgb(frames_uint8)
    if len(frames) > max_frames:
        frames = frames[np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    frames = enlarge(frames, min_size)
    num, height, width, _ = frames.shape
    columns = min(columns, num)
    rows = math.ceil(num / columns)
    sheet = np.full((rows * (height + border) + border, columns * (width + border) + border, 3), 255, np.uint8)
    for index, frame in enumerate(frames):
        top = border + (index // columns) * (height + border)
        left = border + (index % columns) * (width + border)
        sheet[top:top + height, left:left + width] = frame
    return sheet


def save_contact_sheet(frames_uint8, path, columns=8, max_frames=64):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(frames_uint8, columns, max_frames)).save(path)


class Mp4Writer:
    """Streams frames to an H.264 MP4 through imageio-ffmpeg, so long videos never sit in memory.

    lossless=True uses libx264rgb at crf 0, which round-trips uint8 RGB exactly; the default (libx264, yuv420p,
    crf 18) is what players expect. Odd frame sizes are padded by one pixel for yuv420p.
    """

    def __init__(self, path, fps=8, lossless=False):
        self.path = Path(path)
        self.fps = fps
        self.lossless = lossless
        self._encoder = None

    def write(self, frames_uint8):
        frames = _as_rgb(frames_uint8)
        if self._encoder is None:
            self._start(frames.shape[2], frames.shape[1])
        for frame in frames:
            self._encoder.send(np.ascontiguousarray(frame))

    def _start(self, width, height):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.lossless:
            codec, pix_fmt_out, params = "libx264rgb", "rgb24", ["-crf", "0"]
        else:
            codec, pix_fmt_out, params = "libx264", "yuv420p", ["-crf", "18"]
            if width % 2 or height % 2:
                params += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        self._encoder = imageio_ffmpeg.write_frames(
            str(self.path), (width, height), fps=self.fps, codec=codec, pix_fmt_in="rgb24",
            pix_fmt_out=pix_fmt_out, quality=None, macro_block_size=1, output_params=params,
            ffmpeg_log_level="error")
        self._encoder.send(None)  # prime the generator: starts ffmpeg

    def close(self):
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None


class VideoWriter:
    """All outputs of one sampled video, written as frames arrive (long videos stream chunk by chunk).

    Layout: <folder>/frames/<frame>.png, <folder>/video.mp4, <folder>/video.gif, <folder>/contact_sheet.png.
    The GIF and the contact sheet are made at close() from the PNGs already on disk.
    """

    def __init__(self, folder, fps=8, digits=4, lossless_mp4=False):
        self.folder = Path(folder)
        self.frames_dir = self.folder / "frames"
        self.fps = fps
        self.digits = digits
        self.num_written = 0
        self.mp4 = Mp4Writer(self.folder / "video.mp4", fps, lossless_mp4)

    def write(self, frames_uint8):
        save_png_frames(frames_uint8, self.frames_dir, self.num_written, self.digits)
        self.mp4.write(frames_uint8)
        self.num_written += len(frames_uint8)

    def close(self):
        self.mp4.close()
        if self.num_written == 0:
            raise ValueError(f"no frames were written to {self.folder}")
        paths = sorted(self.frames_dir.glob("*.png"))
        frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
        save_gif(frames, self.folder / "video.gif", self.fps)
        save_contact_sheet(frames, self.folder / "contact_sheet.png")


def save_schedule_heatmap(frame_schedule, path, num_timesteps=1000, title="VTV schedule"):
    """Heatmap of per-frame noise levels, frames (rows) x sampling steps (columns).

    frame_schedule: (S+1, N) base-scale levels with -1 = clean (drawn black); NaN = frame not in the
    sampling window at that step (long/diagonal streams; drawn light grey).
    """
    levels = np.asarray(frame_schedule, dtype=np.float64).T  # (N, S+1)
    num_frames, num_rows = levels.shape
    cmap = plt.get_cmap("viridis").with_extremes(under="black", bad="0.85")
    width = min(16.0, 3.0 + 0.12 * num_rows)
    height = min(12.0, 2.0 + 0.25 * num_frames)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(np.ma.masked_invalid(levels), aspect="auto", interpolation="nearest", cmap=cmap,
                      vmin=0, vmax=num_timesteps - 1, origin="upper")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("sampling step (row of the schedule)")
    ax.set_ylabel("frame")
    ax.set_title(f"{title}  (black = clean)")
    fig.colorbar(image, ax=ax, label="noise level (base timestep)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
