"""A browser page for trying a model folder: any VTV preset, with uploaded images or videos (Gradio).

    python tools/app.py --model results/demo/pretrained                      # then open http://127.0.0.1:7860
    python tools/app.py --model latte-ffs --vae sd-vae-ft-ema --device cuda   # a latent model
    python tools/app.py --model <text run>/pretrained --text_encoder minilm   # a text model: a prompt box appears

Each run samples one video through FVDMPipeline and writes it to <out_dir>/<run:04d>-<preset>/ as
sample/generate.py lays a video out (frames/, video.mp4, video.gif, contact_sheet.png, schedule.png); the page
shows video.mp4 and the schedule heatmap. The page works offline: no analytics, version check or web fonts.
"""
import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry, no version check
try:
    import gradio as gr
except ImportError as error:
    raise ImportError("tools/app.py needs gradio: pip install -r requirements-extras.txt (tools/setup_env.sh "
                      "installs it unless FVDM_SETUP=core)") from error

from diffusion import vtv  # noqa: E402
from sample.outputs import VideoWriter, save_schedule_heatmap  # noqa: E402
from sample.pipeline import FVDMPipeline  # noqa: E402

# The page's upload fields and the config key each one fills, per preset (the input_keys of vtv.PRESETS).
INPUT_FIELDS = {
    "i2v": {"image": "image"},
    "interpolation": {"image": "first_image", "last_image": "last_image", "video": "video"},
    "transition": {"video": "video_a", "video_b": "video_b"},
    "next_frame": {"video": "video"},
    "custom": {"video": "video"},
    "long": {"video": "video"},
}
UPLOADS = ("image", "last_image", "video", "video_b")
# Inputs a preset cannot do without, as alternatives of keys given together. The CLI would sample a missing clip
# with `standard` first; on this page a missing one is a forgotten upload. long and custom start from noise.
REQUIRED = {
    "i2v": [("image",)],
    "interpolation": [("first_image", "last_image"), ("video",)],
    "transition": [("video_a", "video_b")],
    "next_frame": [("video",)],
}
LENGTH_PRESETS = ("long", "diagonal")  # the presets whose output length is a choice (num_frames)
CSS = "#result video { image-rendering: pixelated; }"  # small models' frames enlarged sharp, not blurred


class MissingInput(ValueError):
    pass


def check_inputs(preset, inputs):
    """Raise MissingInput naming what `preset` lacks; inputs: {config key: upload} of the keys it was given."""
    alternatives = REQUIRED.get(preset, [()])
    if any(all(inputs.get(key) is not None for key in keys) for keys in alternatives):
        return
    missing = [key for key in alternatives[0] if inputs.get(key) is None]
    others = "".join(f" (or {' and '.join(keys)})" for keys in alternatives[1:])
    raise MissingInput(f"preset {preset!r} needs an upload for {' and '.join(missing)}{others}")


def pipeline_kwargs(preset, uploads, steps, sampler, seed, length=None, cfg_scale=1.0, prompt=None,
                    class_label=None):
    """The FVDMPipeline call of one page run. uploads: {field of UPLOADS: file path or None}; fields the preset does
    not read are dropped (they stay filled when the user switches presets), prompt and class_label when blank."""
    inputs = {key: uploads.get(field) for field, key in INPUT_FIELDS.get(preset, {}).items()}
    check_inputs(preset, inputs)
    kwargs = {"preset": preset, "num_inference_steps": int(steps), "sample_method": sampler, "seed": int(seed),
              "cfg_scale": float(cfg_scale), **{key: value for key, value in inputs.items() if value is not None}}
    if preset in LENGTH_PRESETS and length is not None:
        kwargs["num_frames"] = int(length)
    if prompt:
        kwargs["prompt"] = prompt
    if class_label is not None:
        kwargs["class_labels"] = [int(class_label)]
    return kwargs


def run_folder(out_dir, preset):
    """<out_dir>/<run:04d>-<preset>, the next free run number (runs are queued one at a time)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / f"{len(list(out_dir.iterdir())):04d}-{preset}"


def generate(pipe, kwargs, out_dir):
    """Sample the video of kwargs and write its folder: (video.mp4, schedule.png) paths."""
    if pipe.settings.get("text_encoder") is not None and "prompt" not in kwargs:
        raise MissingInput("this is a text model: it needs a prompt")
    cfg, _ = pipe.config(**kwargs)  # the same checks as the call, and its fps and levels for the heatmap
    out = pipe(**kwargs)
    folder = run_folder(out_dir, cfg.preset)
    writer = VideoWriter(folder, cfg.fps)
    writer.write(out.videos[0])
    writer.close()
    title = f"{cfg.preset}, {cfg.sample_method}-{cfg.num_sampling_steps}"
    save_schedule_heatmap(out.schedule, folder / "schedule.png", pipe.diffusion(cfg).base_num_timesteps, title)
    return folder / "video.mp4", folder / "schedule.png"


def visible_fields(preset, settings):
    """{field: its label, or None when hidden} for preset: uploads named by the config key they fill."""
    fields = {field: INPUT_FIELDS.get(preset, {}).get(field) for field in UPLOADS}
    fields["length"] = "output frames" if preset in LENGTH_PRESETS else None
    fields["prompt"] = "prompt" if settings.get("text_encoder") is not None else None
    classes = settings["num_classes"]
    fields["class_label"] = f"class (0-{classes - 1}; blank: random)" if classes else None
    return fields


# ---------------------------------------------------------------- page
def build_app(pipe, out_dir):
    settings = pipe.settings
    initial = visible_fields("standard", settings)

    def shown(field, component, **kwargs):
        return component(label=initial[field] or field, visible=initial[field] is not None, **kwargs)

    with gr.Blocks(title="FVDM", analytics_enabled=False) as app:
        gr.Markdown(f"## FVDM: vectorized-timestep video diffusion\n`{pipe!r}`")
        with gr.Row():
            with gr.Column():
                preset = gr.Dropdown(list(vtv.PRESETS), value="standard", label="preset")
                image = shown("image", gr.Image, type="filepath", sources=["upload"], height=200, elem_id="image")
                last_image = shown("last_image", gr.Image, type="filepath", sources=["upload"], height=200,
                                   elem_id="last_image")
                video = shown("video", gr.Video, sources=["upload"], height=200, elem_id="video")
                video_b = shown("video_b", gr.Video, sources=["upload"], height=200, elem_id="video_b")
                prompt = shown("prompt", gr.Textbox, elem_id="prompt")
                class_label = shown("class_label", gr.Number, precision=0, value=None, elem_id="class_label")
                with gr.Row():
                    steps = gr.Slider(1, 1000, value=50, step=1, label="sampling steps", elem_id="steps")
                    sampler = gr.Radio(["ddim", "ddpm"], value="ddim", label="sampler")
                with gr.Row():
                    seed = gr.Number(0, precision=0, label="seed")
                    cfg_scale = gr.Number(1.0, minimum=0, label="cfg scale (> 1: guidance by class or prompt)")
                    length = shown("length", gr.Number, value=4 * settings["num_frames"], precision=0, minimum=1)
                run = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                result = gr.Video(label="video", autoplay=True, loop=True, interactive=False, height=320,
                                  elem_id="result")
                heatmap = gr.Image(label="schedule", show_label=False, interactive=False, elem_id="heatmap")

        optional = {"image": image, "last_image": last_image, "video": video, "video_b": video_b, "length": length,
                    "prompt": prompt, "class_label": class_label}

        def on_preset(name):
            return [gr.update(label=label or field, visible=label is not None)
                    for field, label in visible_fields(name, settings).items()]

        def on_run(name, image, last_image, video, video_b, steps, sampler, seed, length, cfg_scale, prompt, label):
            uploads = {"image": image, "last_image": last_image, "video": video, "video_b": video_b}
            try:
                kwargs = pipeline_kwargs(name, uploads, steps, sampler, seed, length, cfg_scale, prompt, label)
                return [str(path) for path in generate(pipe, kwargs, out_dir)]
            except ValueError as error:  # MissingInput and the config's own checks name the key at fault
                raise gr.Error(str(error)) from error

        preset.change(on_preset, preset, [optional[field] for field in initial])
        run.click(on_run, [preset, image, last_image, video, video_b, steps, sampler, seed, length, cfg_scale,
                           prompt, class_label], [result, heatmap])
    return app


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (Latte.save_pretrained: training's pretrained/)")
    parser.add_argument("--vae", help="local VAE folder of a latent model (default: the one it was trained with)")
    parser.add_argument("--text_encoder", help="minilm or a local folder (default: the one it was trained with)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves the local network")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--out_dir", default="samples/app", help="where each run's folder is written")
    args = parser.parse_args(argv)
    pipe = FVDMPipeline.from_pretrained(args.model, vae=args.vae, text_encoder=args.text_encoder, device=args.device,
                                        progress=False)
    app = build_app(pipe, args.out_dir)
    app.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, show_error=True,
                                                  allowed_paths=[str(Path(args.out_dir).resolve())], css=CSS)


if __name__ == "__main__":
    main()
