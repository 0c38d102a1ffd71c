"""configs/: YAML files that do not parse name the file, --help documents every key, launchers set up the env."""
import dataclasses
import inspect
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import train_video
from configs import merge_config
from sample import config as sample_config
from sample import generate, sample_ddp
from training import TrainConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text,message", [
    ("preset: i2v\nimage: [a.png, b.png\nseed: 3\n", r"YAML syntax error at line 3, column 5: did not find expected"),
    ("preset: i2v\n  seed: 3\n", r"YAML syntax error at line 2, column 7: mapping values are not allowed"),
    ("- preset: i2v\n- seed: 3\n", r"the top level must be a mapping of config keys \(key: value lines\), not a list"),
])
def test_unreadable_yaml_names_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^config file {re.escape(str(path))}: {message}"):
        merge_config(sample_config.SampleConfig, path)


def test_int_keyed_dicts_take_string_keys_from_yaml_too(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text("preset: custom\nframe_expressions:\n  '0': clean\n  -1: t\n")
    assert dict(merge_config(sample_config.SampleConfig, path).frame_expressions) == {0: "clean", -1: "t"}


def documented_comments(schema):
    """{key: comment beside its default}, read with a regex from the source of the schema and its bases."""
    comments = {}
    for cls in reversed(schema.__mro__):
        if dataclasses.is_dataclass(cls):
            comments.update(re.findall(r"^\s+(\w+): [^#\n]+#\s*(.+)$", inspect.getsource(cls), flags=re.M))
    return comments


def command_line_spelling(value):
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("schema,main", [
    (TrainConfig, train_video.main),
    (sample_config.SampleConfig, generate.main),
    (sample_config.EvalConfig, sample_ddp.main),
], ids=["train_video", "generate", "sample_ddp"])
def test_help_lists_every_key_with_its_default_and_comment(capsys, schema, main):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    comments = documented_comments(schema)
    blocks = dict(re.findall(r"^  (\w+)=.*\n((?:      .*\n)*)", help_text, flags=re.M))
    for f in dataclasses.fields(schema):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = f"{f.name}={command_line_spelling(default)}"
        assert f"\n  {shown}\n" in help_text, shown
        if f.name in comments:
            assert comments[f.name][:40] in blocks[f.name], f.name
        # what --help shows is what the key takes: the shown default given back reads as the default
        value = merge_config(schema, None, [shown])[f.name]
        assert (value == default) if not isinstance(default, dict) else dict(value) == default, shown
    assert set(blocks) == {f.name for f in dataclasses.fields(schema)}


def test_help_keeps_continued_comments_with_their_key_and_section_headers_apart():
    from configs import config_help

    help_text = config_help(sample_config.EvalConfig)
    ckpt = help_text.split("\n  ckpt=null\n")[1].split("\n  weights=")[0]
    assert ckpt.splitlines() == ["      ours (<step>.pt, <step>-ema.safetensors, or a checkpoints/ folder: newest),",
                                 "      a model folder (config.json + safetensors: <run>/pretrained/), a converted",
                                 "      Latte/FVDM .pt, or null = random-init model (smoke runs)"]
    assert "\n--- preset inputs (images/videos are read" in help_text
    assert "\nan input left null is generated first with the standard preset) ---\n  image=null\n" in help_text
    # EvalConfig overrides SampleConfig's progress: its own default and comment
    assert "\n  progress=false\n      per-video sampler bars (the batch bar of rank 0 is always shown)\n" in help_text
    assert help_text.rstrip().endswith("mp4_dir=null\n      also write <mp4_dir>/<video:05d>.mp4 (lossless "
                                       "libx264rgb); null: no MP4")


LAUNCHERS = sorted(p for folder in ("train_scripts", "sample", "tools") for p in (REPO / folder).glob("*.sh")
                   if p.name != "setup_env.sh")


@pytest.mark.parametrize("script", LAUNCHERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_launcher_sets_up_the_environment_before_running_python(script):
    lines = [line.split("#")[0] for line in script.read_text().splitlines()]  # code, not comments
    cd = lines.index('cd "$(dirname "$0")/.."')
    source = next(k for k, line in enumerate(lines) if line.strip() == "source tools/setup_env.sh")
    first_python = next(k for k, line in enumerate(lines) if re.search(r"\bpython\b", line))
    assert cd < source < first_python
    assert not any(re.search(r"(^|[\s(])torchrun\b|\$\{PYTHON", line) for line in lines)  # python of setup_env


def requirement_lines(path):
    """The requirement specifiers of a pip requirements file, comments dropped."""
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def test_environment_yml_lists_both_requirements_files():
    yml = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(entry["pip"] for entry in yml["dependencies"] if isinstance(entry, dict))
    core, extras = requirement_lines(REPO / "requirements.txt"), requirement_lines(REPO / "requirements-extras.txt")
    assert pip_section == core + extras + ["-e ."]
    assert not set(core) & set(extras)


def test_setup_env_refuses_an_unknown_level():
    result = subprocess.run(["bash", "-c", "source tools/setup_env.sh"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "FVDM_SETUP": "minimal"}, timeout=60)
    assert result.returncode != 0
    assert "FVDM_SETUP must be core or full, not 'minimal'" in result.stderr
