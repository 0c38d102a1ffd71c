"""diffusion/vtv.py: every preset's schedule against its definition written out here as plain loops, and the
presets run through vtv.sample_video / sample_window with a tiny random model (held frames exact, chunk joins,
streaming)."""
import math
import weakref

import numpy as np
import pytest
import torch

from diffusers import DDIMScheduler

from diffusion import create_diffusion, vtv
from models import create_model

N = 8


def grid_of(respacing):
    return create_diffusion(respacing).sampling_timesteps


def half_up(x):
    return math.floor(x + 0.5)


def tiny_model(in_channels=3, input_size=8, num_frames=N, num_classes=0, patch=4, seed=0):
    """A Latte-T with its zero-initialised (adaLN-Zero) weights randomised, so outputs depend on x and t."""
    torch.manual_seed(seed)
    model = create_model(f"Latte-T/{patch}", input_size=input_size, num_frames=num_frames, in_channels=in_channels,
                         num_classes=num_classes)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and not param.any():
                param.normal_(0, 0.05)
    return model.eval()


class Recorder(torch.nn.Module):
    """Passes calls through to the model and keeps the (x, t) of each call."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = []

    def forward(self, x, t, y=None):
        self.calls.append((x.clone(), t.clone()))
        return self.model(x, t, y)


# ----------------------------------------------------------------------------- schedules vs definitions

def test_descending_grid_and_standard_is_t_for_every_frame():
    grid = grid_of("ddim50")
    assert grid[:3] == [0, 20, 40] and grid[-1] == 980
    plan = vtv.build_plan("standard", grid, N)
    expected = [[t] * N for t in range(980, -1, -20)] + [[-1] * N]
    assert plan.frame_schedule.tolist() == expected
    assert not plan.cond_mask.any()


@pytest.mark.parametrize("cond_frame", [0, 3, N - 1, -1, -N])
def test_i2v_holds_one_frame_clean_at_any_index(cond_frame):
    grid = grid_of("10")
    plan = vtv.build_plan("i2v", grid, N, cond_frame=cond_frame)
    held = cond_frame % N
    expected = [[-1 if i == held else t for i in range(N)] for t in sorted(grid, reverse=True)] + [[-1] * N]
    assert plan.frame_schedule.tolist() == expected
    assert plan.cond_mask.tolist() == [i == held for i in range(N)]


@pytest.mark.parametrize("keyframes", [None, [0, 3, 7], [5, -8]])
def test_interpolation_keyframes(keyframes):
    grid = grid_of("10")
    plan = vtv.build_plan("interpolation", grid, N, keyframes=keyframes)
    held = {0, N - 1} if keyframes is None else {k % N for k in keyframes}
    expected = [[-1 if i in held else t for i in range(N)] for t in sorted(grid, reverse=True)] + [[-1] * N]
    assert plan.frame_schedule.tolist() == expected


def test_transition_and_next_frame_layouts():
    grid = grid_of("10")
    plan = vtv.build_plan("transition", grid, N, frames_a=2, frames_b=3)
    assert plan.cond_mask.tolist() == [True, True, False, False, False, True, True, True]
    plan = vtv.build_plan("next_frame", grid, N, context_frames=5, predict_frames=2)
    assert plan.num_frames == 7
    assert plan.cond_mask.tolist() == [True] * 5 + [False] * 2
    assert plan.frame_schedule[:-1, 5:].tolist() == [[t, t] for t in sorted(grid, reverse=True)]
    assert vtv.build_plan("next_frame", grid, N).cond_mask.tolist() == [True] * (N - 1) + [False]


def progressive_reference(grid, num_frames, c):
    """The written definition: frames descend jointly from pure noise, each stopping at its first level
    min(round(c i T_top), T_top); then tau_i(t) = min(round(c i t), t) for t down the grid; then clean."""
    levels = sorted(grid, reverse=True)
    top = levels[0]
    start = [min(half_up(c * i * top), top) for i in range(1, num_frames + 1)]
    rows = []
    for g in levels:
        if g > min(start):
            rows.append([max(g, s) for s in start])
    for t in levels:
        rows.append([min(half_up(c * i * t), t) for i in range(1, num_frames + 1)])
    rows.append([-1] * num_frames)
    deduped = [rows[0]]
    for row in rows[1:]:
        if row != deduped[-1]:
            deduped.append(row)
    return deduped


@pytest.mark.parametrize("respacing,c,frames",
                         [("ddim50", 0.2, 16), ("10", 0.2, N), ("25", 0.35, N), ("ddim50", 1.5, 4)])
def test_progressive_matches_definition(respacing, c, frames):
    grid = grid_of(respacing)
    plan = vtv.build_plan("progressive", grid, frames, progressive_c=c)
    assert plan.frame_schedule.tolist() == progressive_reference(grid, frames, c)
    assert (plan.frame_schedule[0] == max(grid)).all()  # pure noise at the start


def test_progressive_paper_values():
    """DDIM-50 (top level 980), c = 0.2, 16 frames: tau at t = 980 is 196, 392, 588, 784, then 980."""
    schedule = vtv.build_plan("progressive", grid_of("ddim50"), 16).frame_schedule.tolist()
    first_main_row = [196, 392, 588, 784] + [980] * 12
    assert first_main_row in schedule
    row = schedule.index(first_main_row)
    assert schedule[row + 1] == [min(half_up(0.2 * i * 960), 960) for i in range(1, 17)]
    assert schedule[row - 1] == [200, 392, 588, 784] + [980] * 12  # last warm-up row: frames 2-4 already wait


@pytest.mark.parametrize("lag", [1, 3])
def test_progressive_lag_matches_definition(lag):
    grid = grid_of("10")
    path = sorted(grid, reverse=True) + [-1]
    plan = vtv.build_plan("progressive", grid, N, progressive_mode="lag", progressive_lag=lag)
    rows = len(path) + lag * (N - 1)
    expected = [[path[min(max(k - lag * i, 0), len(path) - 1)] for i in range(N)] for k in range(rows)]
    assert plan.frame_schedule.tolist() == expected


def test_reverse_denoises_the_last_frame_first():
    grid = grid_of("10")
    path = sorted(grid, reverse=True) + [-1]
    plan = vtv.build_plan("reverse", grid, N)
    rows = len(path) + N - 1
    expected = [[path[min(max(k - (N - 1 - i), 0), len(path) - 1)] for i in range(N)] for k in range(rows)]
    assert plan.frame_schedule.tolist() == expected and not plan.cond_mask.any()


def test_custom_expression_reproduces_progressive_and_frame_overrides():
    grid = grid_of("ddim50")
    custom = vtv.build_plan("custom", grid, 16, expression="min(0.2 * i * t, t)")
    assert torch.equal(custom.frame_schedule, vtv.build_plan("progressive", grid, 16).frame_schedule)

    plan = vtv.build_plan("custom", grid_of("10"), 4, expression="t", frame_expressions={0: "clean", -1: "0"})
    levels = sorted(grid_of("10"), reverse=True)  # 999 ... 111, 0
    # frame 3 sits at level 0 throughout: the warm-up first brings it down from pure noise while frames 1-2
    # wait at the top, then frames 1-2 follow t while frame 3 waits at 0
    expected = [[-1, 999, 999, g] for g in levels if g > 0] + [[-1, g, g, 0] for g in levels] + [[-1] * 4]
    assert plan.frame_schedule.tolist() == expected
    assert plan.cond_mask.tolist() == [True, False, False, False]


EXPRESSIONS = ["t", "0.5 * t + 3", "min(0.2 * i * t, t)", "max(t - 50 * (i - 1), 0)", "t if i % 2 else t // 2",
               "abs(-t) ** 1", "floor(t / N) * N", "ceil(sqrt(t * T))", "t * (i <= 2 and i >= 1)", "-(-t)",
               "clip(t * i / 4, 0, t)", "exp(log(t + 1)) - 1", "t if not i == 3 else 0", "1 < i < 4 and t or 0"]


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_level_expression_agrees_with_python(text):
    namespace = {"min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil, "sqrt": math.sqrt,
                 "exp": math.exp, "log": math.log, "clip": lambda x, lo, hi: min(max(x, lo), hi)}
    expression = vtv.LevelExpression(text)
    for i in (1, 2, 3, 5):
        for t in (0, 7, 500, 999):
            values = dict(i=i, t=t, N=16, T=1000)
            assert expression(**values) == pytest.approx(eval(text, {"__builtins__": {}}, {**namespace, **values}))


@pytest.mark.parametrize("text,message", [
    ("__import__('os')", "only calls"),
    ("os", "unknown name 'os'"),
    ("t.real", "Attribute"),
    ("x + 1", "unknown name 'x'"),
    ("[t][0]", "Subscript is not allowed"),
    ("'t'", "not a number"),
    ("(lambda: t)()", "only calls"),
    ("lambda: t", "Lambda is not allowed"),
    ("min(t, key=abs)", "only calls"),
    ("t +", "not valid"),
    ("min", "is a function"),
])
def test_level_expression_rejects_non_arithmetic(text, message):
    with pytest.raises(ValueError, match=message):
        vtv.LevelExpression(text)(i=1, t=1, N=1, T=1)


@pytest.mark.parametrize("text", ["9 ** 9 ** 9", "2 ** 2 ** 2 ** 2 ** 30", "10 ** 301", "floor(exp(700)) ** 2"])
def test_level_expression_huge_power_is_refused_before_computing(text):
    with pytest.raises(ValueError, match=r"config key 'expression': .*fails at frame 0 .*OverflowError: .*exceeds"):
        vtv.LevelExpression(text)(i=1, t=1, N=1, T=1)
    assert vtv.LevelExpression("10 ** 300 / 10 ** 298")(i=1, t=1, N=1, T=1) == pytest.approx(100)


@pytest.mark.parametrize("text,frame,t,problem", [
    ("t / (i - 2)", 1, 999, "ZeroDivisionError"),
    ("t % (i - 1)", 0, 999, "ZeroDivisionError"),
    ("0 ** (i - 2)", 0, 999, "ZeroDivisionError"),
    ("log(t - 999)", 0, 999, "ValueError: math domain error"),
    ("(i - 2) ** 0.5", 0, 999, "not a real number"),
    ("exp(t)", 0, 999, "OverflowError"),
    ("floor(1e300) * floor(1e300)", 0, 999, "int too large"),
    ("1e308 * t", 0, 999, "gives inf"),
    ("clip(t)", 0, 999, "TypeError"),
])
def test_failing_expression_names_key_expression_frame_and_t(text, frame, t, problem):
    with pytest.raises(ValueError) as error:
        vtv.build_plan("custom", grid_of("10"), N, expression=text)
    message = str(error.value)
    assert message.startswith(f"config key 'expression': schedule expression {text!r}")
    assert f"at frame {frame} (i={frame + 1}), t={t}" in message and problem in message
    with pytest.raises(ValueError, match=r"config key 'frame_expressions.-1': schedule expression 't / \(t - 999\)'"
                                         r": fails at frame 7 \(i=8\), t=999: ZeroDivisionError"):
        vtv.build_plan("custom", grid_of("10"), N, frame_expressions={-1: "t / (t - 999)"})


@pytest.mark.parametrize("text,message", [
    ("(" * 300 + "t" + ")" * 300, "not valid: too many nested parentheses"),
    ("-" * 101 + "t", "nested deeper than 100 levels"),
    ("t + " * 120 + "t", "nested deeper than 100 levels"),
    ("t + " * 300 + "t", "longer than 1000 characters"),
])
def test_deep_or_long_expressions_are_refused_when_parsed(text, message):
    with pytest.raises(ValueError, match=rf"config key 'frame_expressions.2': schedule expression .*{message}"):
        vtv.build_plan("custom", grid_of("10"), N, frame_expressions={2: text})
    assert vtv.LevelExpression("-" * 91 + "t")(i=1, t=5, N=1, T=1) == -5


# ----------------------------------------------------------------------------- bad specs

@pytest.mark.parametrize("preset,options,message", [
    ("nonsense", {}, "unknown preset 'nonsense'"),
    ("i2v", {"cond_frame": N}, f"cond_frame: frame index {N} is out of range for {N} frames"),
    ("i2v", {"cond_frame": -N - 1}, "out of range"),
    ("i2v", {"keyframes": [0]}, "takes options"),
    ("interpolation", {"keyframes": list(range(N))}, "no frame is left to generate"),
    ("interpolation", {"keyframes": []}, "keyframes is empty"),
    ("interpolation", {"keyframes": [0, 1.5]}, "not an integer"),
    ("transition", {"frames_a": 4, "frames_b": 4}, "leaves no frame to generate"),
    ("next_frame", {"context_frames": 6, "predict_frames": 3}, "exceeds the model's 8 frames"),
    ("next_frame", {"predict_frames": 0}, "predict_frames must be >= 1"),
    ("progressive", {"progressive_mode": "spiral"}, "progressive mode"),
    ("progressive", {"progressive_c": 0}, "c must be > 0"),
    ("custom", {"frame_expressions": {i: "clean" for i in range(N)}}, "no frame is left to generate"),
    ("custom", {"frame_expressions": {N: "t"}}, "frame index 8 is out of range"),
    ("custom", {"expression": "1000 - t"}, "rises for frame 0"),
    ("long", {}, "chunk after chunk"),
])
def test_bad_specs_name_the_problem(preset, options, message):
    with pytest.raises(ValueError, match=message):
        vtv.build_plan(preset, grid_of("10"), N, **options)


def test_bad_streaming_specs():
    with pytest.raises(ValueError, match="context_frames must lie in"):
        vtv.plan_long_video(N, N, 100)
    with pytest.raises(ValueError, match="length 8 must exceed the 8 given frames"):
        vtv.plan_long_video(N, 4, 8, given_frames=8)
    with pytest.raises(ValueError, match="needs at least 16 sampling steps, got 10"):
        vtv.diagonal_levels(grid_of("10"), 16)


# ----------------------------------------------------------------------------- long and diagonal plans

def test_plan_long_video_windows():
    # 8-frame windows carrying 3 frames: 5 new per window; the last window takes more context, not fewer frames
    assert vtv.plan_long_video(8, 3, 20) == [(0, 0, 8), (5, 3, 5), (10, 3, 5), (12, 6, 2)]
    assert vtv.plan_long_video(8, 3, 20, given_frames=1) == [(0, 1, 7), (5, 3, 5), (10, 3, 5), (12, 6, 2)]
    assert vtv.plan_long_video(16, 8, 128) == [(0, 0, 16)] + [(8 * k, 8, 8) for k in range(1, 15)]
    assert vtv.plan_long_video(8, 4, 5) == [(0, 0, 5)]


def test_long_video_schedule_staircase():
    grid = grid_of("4")  # 999, 666, 333, 0
    levels = vtv.long_video_schedule(grid, 4, 2, 6)  # windows (0,0,4), (2,2,2)
    path = [999, 666, 333, 0, -1]
    assert levels.shape == (10, 6)
    assert levels[:5, :4].tolist() == [[p] * 4 for p in path]
    assert np.isnan(levels[:5, 4:]).all()
    assert (levels[5:, :4] == -1).all()
    assert levels[5:, 4:].tolist() == [[p] * 2 for p in path]


def diagonal_reference(grid, num_frames, partitions, num_output):
    """Per-frame trajectories: frames 0..Q-1 start at level index Q and descend one index per step to their
    staggered index f + 1 (then wait); afterwards each step lowers every queued frame by one index, the front
    reaching index 0 (clean) leaves, and frame f >= Q enters at index Q after step f - Q."""
    Q = partitions * num_frames
    sorted_grid = sorted(grid)
    if len(sorted_grid) == Q:
        levels = sorted_grid
    else:
        levels = [sorted_grid[int(round(k * (len(sorted_grid) - 1) / (Q - 1)))] for k in range(Q)]
    levels = [-1] + levels
    rows = Q + num_output
    table = np.full((rows, num_output), np.nan)
    for f in range(num_output):
        for row in range(rows):
            if f < Q and row < Q:
                index = max(Q - row, f + 1)
            elif row >= Q:
                s = row - Q  # steady step just done
                if f > s + Q:
                    continue
                index = max(f - s, 0)
            else:
                continue
            table[row, f] = levels[index]
    return table


@pytest.mark.parametrize("respacing,partitions", [("ddim8", 1), ("10", 1), ("ddim16", 2)])
def test_diagonal_schedule_matches_trajectories(respacing, partitions):
    grid = grid_of(respacing)
    expected = diagonal_reference(grid, 8, partitions, 30)
    got = vtv.diagonal_video_schedule(grid, 8, 30, partitions)
    np.testing.assert_array_equal(got, expected)
    # every frame visits every level once, top to clean
    levels = [-1] + sorted(vtv.diagonal_levels(grid, 8 * partitions))
    for f in range(30):
        visited = [v for v in got[:, f] if not np.isnan(v)]
        distinct = [v for k, v in enumerate(visited) if k == 0 or v != visited[k - 1]]
        assert distinct == levels[::-1]


# ----------------------------------------------------------------------------- running the presets

def model_timesteps_of(schedule):
    """What the model should see at each step that moves a frame: the row's levels with clean frames at 0."""
    return [row.clamp(min=0) for row, nxt in zip(schedule[:-1], schedule[1:]) if not torch.equal(row, nxt)]


def diffusers_ddim(model, noise, num_steps):
    """diffusers' DDIM (eta 0) with the model's eps (its first C output channels): the independent reference."""
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                              clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0)
    scheduler.set_timesteps(num_steps)
    x = noise
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(x, t.expand(*x.shape[:2]))[:, :, : x.shape[2]]
            x = scheduler.step(eps, t, x).prev_sample
    return x


def test_standard_ddim_equals_diffusers_ddim():
    model = tiny_model()
    diffusion = create_diffusion("ddim10")
    noise = torch.randn(2, N, 3, 8, 8)
    _, (ours,) = vtv.sample_video(diffusion, model, "standard", noise.shape, noise_fn=lambda num: noise)
    torch.testing.assert_close(ours, diffusers_ddim(model, noise, 10), rtol=1e-4, atol=1e-4)
    assert ours.abs().max() > 0.1  # a real sample, not a degenerate zero


@pytest.mark.parametrize("preset,options", [
    ("i2v", {"cond_frame": 2}), ("interpolation", {"keyframes": [0, 4, 7]}),
    ("transition", {"frames_a": 2, "frames_b": 2}),
    ("next_frame", {"context_frames": 5, "predict_frames": 2}), ("progressive", {}),
    ("progressive", {"progressive_mode": "lag"}), ("reverse", {}),
    ("custom", {"expression": "max(t - 100 * (i - 1), 0)", "frame_expressions": {0: "clean"}}),
])
@pytest.mark.parametrize("in_channels", [3, 4])  # pixels and VAE latents: the model's space either way
def test_presets_run_their_schedule_and_hold_clean_frames_exactly(preset, options, in_channels):
    model = Recorder(tiny_model(in_channels=in_channels))
    diffusion = create_diffusion("6")
    plan = vtv.build_plan(preset, diffusion.sampling_timesteps, N, **options)
    n = plan.num_frames
    cond_frames = torch.randn(2, n, in_channels, 8, 8)
    out = vtv.sample_window(diffusion, model, (2, n, in_channels, 8, 8), plan.frame_schedule, cond_frames=cond_frames,
                                    cond_mask=plan.cond_mask, noise=torch.randn(2, n, in_channels, 8, 8))
    expected = model_timesteps_of(plan.frame_schedule)
    assert len(model.calls) == len(expected)
    for (_, t), row in zip(model.calls, expected):
        assert torch.equal(t, row.expand(2, -1))
    assert torch.equal(out[:, plan.cond_mask], cond_frames[:, plan.cond_mask])  # bit-exact
    assert not torch.isclose(out[:, ~plan.cond_mask], cond_frames[:, ~plan.cond_mask]).any()


def test_stabilization_shows_noised_conditioning_but_returns_clean():
    model = Recorder(tiny_model())
    diffusion = create_diffusion("5")
    plan = vtv.build_plan("i2v", diffusion.sampling_timesteps, N)
    cond_frames = torch.rand(1, N, 3, 8, 8)
    out = vtv.sample_window(diffusion, model, (1, N, 3, 8, 8), plan.frame_schedule, cond_frames=cond_frames,
                                    cond_mask=plan.cond_mask, cond_noise_level=100)
    assert torch.equal(out[:, 0], cond_frames[:, 0])
    for x, t in model.calls:
        assert t[0, 0] == 100
        assert not torch.equal(x[:, 0], cond_frames[:, 0])


def generator_locals_frames(generator, frame_numel):
    """Frames' worth of tensors the suspended generator holds."""
    tensors = [v for v in generator.gi_frame.f_locals.values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() for t in tensors) / frame_numel


def test_long_video_joins_chunks_at_the_right_frames():
    model = Recorder(tiny_model())
    diffusion = create_diffusion("3")
    given = torch.randn(2, 3, 3, 8, 8)
    chunks = list(vtv.iter_long_video(diffusion, model, (2, N, 3, 8, 8), 30, 3, given=given))
    video = torch.cat(chunks, dim=1)
    assert video.shape == (2, 30, 3, 8, 8)
    assert torch.equal(video[:, :3], given)
    windows = vtv.plan_long_video(N, 3, 30, given_frames=3)
    assert [c.shape[1] for c in chunks] == [3] + [new for _, _, new in windows]
    calls = iter(model.calls)
    for start, context, new in windows:
        for step in range(3):  # three sampling steps per window
            x, t = next(calls)
            assert x.shape[1] == context + new <= N
            assert torch.equal(x[:, :context], video[:, start:start + context])  # the held context, exactly
            level = sorted(diffusion.sampling_timesteps)[2 - step]
            assert (t[:, :context] == 0).all() and (t[:, context:] == level).all()
    assert next(calls, None) is None


def test_long_video_reaches_1024_frames_with_bounded_memory():
    model = tiny_model(input_size=8, patch=8, num_frames=16)
    diffusion = create_diffusion("2")
    frame_numel = 3 * 8 * 8
    chunks = vtv.iter_long_video(diffusion, model, (1, 16, 3, 8, 8), 1024, 8)
    total, alive, held = 0, [], []
    for chunk in chunks:
        total += chunk.shape[1]
        alive.append(weakref.ref(chunk))
        held.append(generator_locals_frames(chunks, frame_numel))
        del chunk
    assert total == 1024
    assert max(held) <= 3 * 16  # the window, its context and its conditioning input, however long the video
    assert max(held[:10]) == max(held)
    assert sum(ref() is not None for ref in alive) <= 1  # finished chunks are not kept


def test_diagonal_runs_its_schedule_and_streams():
    model = Recorder(tiny_model())
    diffusion = create_diffusion("ddim16")
    partitions, length, Q = 2, 12, 16
    frames = list(vtv.iter_diagonal_video(diffusion, model, (1, N, 3, 8, 8), length, partitions))
    assert len(frames) == length and all(f.shape == (1, 1, 3, 8, 8) for f in frames)
    table = diagonal_reference(diffusion.sampling_timesteps, N, partitions, length + Q)
    expected = []
    for step in range(Q - 1 + length):
        first = max(0, step - (Q - 1))  # frames leave the front once the ramp is done
        queue = list(range(first, first + Q))
        for p in range(partitions):
            window = queue[p * N:(p + 1) * N]
            level_from = torch.tensor(table[step, window]).long()
            level_to = torch.tensor(table[step + 1, window]).long()
            if not torch.equal(level_from, level_to):
                expected.append(level_from.clamp(min=0))
    assert len(model.calls) == len(expected)
    for (x, t), levels in zip(model.calls, expected):
        assert x.shape[1] == N
        assert torch.equal(t[0], levels)


def test_diagonal_is_unbounded_with_constant_memory():
    model = tiny_model(input_size=8, patch=8)
    diffusion = create_diffusion("8")
    stream = vtv.iter_diagonal_video(diffusion, model, (1, N, 3, 8, 8), length=None)
    held = []
    for count, frame in enumerate(stream):
        held.append(generator_locals_frames(stream, 3 * 8 * 8))
        if count == 200:
            break
    assert max(held) <= N + 2
    assert held[-1] == held[20]


# ----------------------------------------------------------------------------- replacement baseline

def test_replacement_without_known_frames_is_diffusers_ddim():
    model = tiny_model()
    diffusion = create_diffusion("ddim10")
    noise = torch.randn(2, N, 3, 8, 8)
    none_known = torch.zeros(N, dtype=torch.bool)
    ours = vtv.replacement_sample(diffusion, model, noise.shape, torch.zeros_like(noise), none_known, noise=noise)
    torch.testing.assert_close(ours, diffusers_ddim(model, noise, 10), rtol=1e-4, atol=1e-4)


def test_replacement_feeds_forward_noised_known_frames_at_the_shared_t():
    """Two runs with the same generator draw the same noise, so the known frames the model sees differ by exactly
    sqrt(alpha_bar_t) * (x0_a - x0_b); what is left is fresh unit-variance noise scaled by sqrt(1 - alpha_bar_t)."""
    diffusion = create_diffusion("ddim8")
    plan = vtv.build_plan("interpolation", diffusion.sampling_timesteps, N)
    known = plan.cond_mask
    noise = torch.randn(4, N, 3, 8, 8)
    cond_a, cond_b = torch.rand(4, N, 3, 8, 8) * 2 - 1, torch.zeros(4, N, 3, 8, 8)
    runs = []
    for cond_frames in (cond_a, cond_b):
        model = Recorder(tiny_model())
        out = vtv.replacement_sample(diffusion, model, noise.shape, cond_frames, known, noise=noise,
                                                generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[:, known], cond_frames[:, known])  # held exactly in the output
        assert not torch.isclose(out[:, ~known], cond_frames[:, ~known]).any()
        runs.append(model.calls)

    alpha_bar = create_diffusion("").alphas_cumprod  # base scale: the model sees base timesteps
    levels = sorted(diffusion.sampling_timesteps, reverse=True)
    assert len(runs[0]) == len(levels)
    previous_noise = None
    for (x_a, t_a), (x_b, t_b), level in zip(*runs, levels):
        assert (t_a == level).all() and torch.equal(t_a, t_b)  # one t shared by every frame
        signal, spread = alpha_bar[level].sqrt().item(), (1 - alpha_bar[level]).sqrt().item()
        torch.testing.assert_close(x_a[:, known] - x_b[:, known], signal * cond_a[:, known], rtol=0, atol=1e-5)
        step_noise = x_b[:, known] / spread  # cond_b is zero: only the noise remains
        assert 0.85 < step_noise.std().item() < 1.15
        assert previous_noise is None or not torch.isclose(step_noise, previous_noise).any()  # fresh every step
        previous_noise = step_noise
    assert torch.equal(runs[0][0][0][:, ~known], noise[:, ~known])  # unknown frames start from the given noise


@pytest.mark.parametrize("preset,options", [("interpolation", {}), ("next_frame", {"context_frames": 3,
                                                                                    "predict_frames": 5})])
def test_replacement_conditioning_of_a_preset_is_replacement_sample(preset, options):
    model = tiny_model()
    diffusion = create_diffusion("6")
    clip, noise = torch.randn(2, N, 3, 8, 8), torch.randn(2, N, 3, 8, 8)
    plan = vtv.build_plan(preset, diffusion.sampling_timesteps, N, **options)
    _, (video,) = vtv.sample_video(diffusion, model, preset, noise.shape, options=options, clips=[clip],
                                   noise_fn=lambda n: noise[:, :n], method="ddpm", conditioning="replacement",
                                   generator=torch.Generator().manual_seed(0))
    direct = vtv.replacement_sample(diffusion, model, noise.shape, clip, plan.cond_mask, method="ddpm",
                                    noise=noise, generator=torch.Generator().manual_seed(0))
    assert torch.equal(video, direct)
    _, (with_vtv,) = vtv.sample_video(diffusion, model, preset, noise.shape, options=options, clips=[clip],
                                      noise_fn=lambda n: noise[:, :n], method="ddpm",
                                      generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(video[:, ~plan.cond_mask], with_vtv[:, ~plan.cond_mask])


def test_replacement_long_video_shows_every_frame_at_one_t_and_keeps_the_context():
    model = Recorder(tiny_model())
    diffusion = create_diffusion("3")
    given = torch.randn(2, 4, 3, 8, 8)
    video = torch.cat(list(vtv.iter_long_video(diffusion, model, (2, N, 3, 8, 8), 12, 4, given=given,
                                               conditioning="replacement")), dim=1)
    assert video.shape == (2, 12, 3, 8, 8) and torch.equal(video[:, :4], given)
    assert len(model.calls) == 2 * 3  # two windows of 4 new frames, 3 steps each
    assert all((t == t[:, :1]).all() and t.min() >= 0 for _, t in model.calls)  # no frame is shown clean
    second_window = model.calls[3][0]
    assert not torch.equal(second_window[:, :4], video[:, 4:8])  # its context enters forward-noised


def test_replacement_refuses_what_it_cannot_sample():
    model, diffusion = tiny_model(), create_diffusion("4")
    shape = (1, N, 3, 8, 8)
    with pytest.raises(ValueError, match="preset 'progressive' does not have"):
        vtv.sample_video(diffusion, model, "progressive", shape, conditioning="replacement")
    plan = vtv.build_plan("i2v", diffusion.sampling_timesteps, N)
    window = dict(cond_frames=torch.randn(shape), cond_mask=plan.cond_mask, conditioning="replacement")
    for options, message in [({"history_guidance": 2.0}, "neither cond_noise_level"),
                             ({"cond_noise_level": 10}, "neither cond_noise_level")]:
        with pytest.raises(ValueError, match=message):
            vtv.sample_window(diffusion, model, shape, plan.frame_schedule, **window, **options)
    lagged = vtv.build_plan("progressive", diffusion.sampling_timesteps, N, progressive_mode="lag")
    with pytest.raises(ValueError, match="one shared timestep"):
        vtv.sample_window(diffusion, model, shape, lagged.frame_schedule, conditioning="replacement")
    with pytest.raises(ValueError, match="conditioning must be one of"):
        vtv.sample_window(diffusion, model, shape, plan.frame_schedule, cond_frames=torch.randn(shape),
                          cond_mask=plan.cond_mask, conditioning="scalar")


# ----------------------------------------------------------------------------- history guidance

def test_history_guidance_of_one_is_unguided_sampling_exactly():
    model = tiny_model()
    diffusion = create_diffusion("5")
    cond_frames, noise = torch.randn(2, N, 3, 8, 8), torch.randn(2, N, 3, 8, 8)
    videos = []
    for weight in (None, 1.0):
        options = {} if weight is None else {"history_guidance": weight, "history_noise_level": 300}
        _, (video,) = vtv.sample_video(diffusion, model, "interpolation", noise.shape, clips=[cond_frames],
                                       noise_fn=lambda n: noise[:, :n], method="ddpm",
                                       generator=torch.Generator().manual_seed(0), **options)
        videos.append(video)
    assert torch.equal(*videos)


@pytest.mark.parametrize("noise_level", [None, 300])
def test_history_guidance_branch_without_the_frames_sees_them_at_the_noise_level(noise_level):
    model = Recorder(tiny_model())
    diffusion = create_diffusion("5")
    plan = vtv.build_plan("next_frame", diffusion.sampling_timesteps, N, context_frames=3, predict_frames=5)
    held = plan.cond_mask
    cond_frames = torch.rand(2, N, 3, 8, 8) * 2 - 1
    out = vtv.sample_window(diffusion, model, (2, N, 3, 8, 8), plan.frame_schedule, cond_frames=cond_frames,
                            cond_mask=held, history_guidance=2.0, history_noise_level=noise_level)
    assert torch.equal(out[:, held], cond_frames[:, held])  # held frames stay exact in the output
    assert not torch.isclose(out[:, ~held], cond_frames[:, ~held]).any()

    level = 999 if noise_level is None else noise_level
    alpha_bar = create_diffusion("").alphas_cumprod[level]
    expected = model_timesteps_of(plan.frame_schedule)
    assert len(model.calls) == len(expected)  # one call per step, on twice the batch
    for (x, t), row in zip(model.calls, expected):
        assert x.shape[0] == 4
        with_frames, without = x.chunk(2)
        t_with, t_without = t.chunk(2)
        assert torch.equal(t_with, row.expand(2, -1)) and (t_with[:, held] == 0).all()
        assert torch.equal(with_frames[:, held], cond_frames[:, held])
        assert (t_without[:, held] == level).all() and torch.equal(t_without[:, ~held], t_with[:, ~held])
        assert torch.equal(without[:, ~held], with_frames[:, ~held])  # the generated frames are shared
        residual = (without[:, held] - math.sqrt(alpha_bar) * cond_frames[:, held]) / math.sqrt(1 - alpha_bar)
        assert 0.85 < residual.std().item() < 1.15 and abs(residual.mean().item()) < 0.15  # fresh N(0, 1)


def test_history_guidance_combines_the_two_predictions_and_keeps_the_conditional_variance():
    model = tiny_model()  # learned sigma: 2C output channels
    diffusion = create_diffusion("5")
    held = torch.zeros(2, N, dtype=torch.bool)
    held[:, :2] = True
    frames, x = torch.randn(2, N, 3, 8, 8), torch.randn(2, N, 3, 8, 8)
    t = torch.where(held, 0, 600)
    guided = vtv.history_guided(diffusion, model, frames, held, 3.0, 500, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = guided(x, t)
        alpha_bar = diffusion.base_alphas_cumprod_with_clean[501].item()
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        hidden = torch.where(held[..., None, None, None],
                             math.sqrt(alpha_bar) * frames + math.sqrt(1 - alpha_bar) * noise, x)
        with_frames, without = model(x, t), model(hidden, torch.where(held, 500, t))
    torch.testing.assert_close(output[:, :, :3], without[:, :, :3] + 3.0 * (with_frames[:, :, :3] - without[:, :, :3]),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(output[:, :, 3:], with_frames[:, :, 3:], rtol=1e-4, atol=1e-5)


class BatchCounter(torch.nn.Module):
    """Counts model calls and the batch size of each."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.batches = []
        self.num_classes = model.num_classes

    def forward(self, x, t, y=None):
        self.batches.append(x.shape[0])
        return self.model(x, t, y)

    def forward_with_cfg(self, x, t, y, cfg_scale):
        return type(self.model).forward_with_cfg(self, x, t, y, cfg_scale)

    @property
    def in_channels(self):
        return self.model.in_channels


@pytest.mark.parametrize("cfg_scale,history_guidance,batch", [(1.0, 1.0, 3), (1.0, 2.0, 6), (4.0, 1.0, 6),
                                                              (4.0, 2.0, 12)])
def test_history_and_class_guidance_make_one_call_per_step(cfg_scale, history_guidance, batch):
    """The documented count: one model call per sampling step, on the batch doubled by each guidance in use."""
    from sample.sampling import sampling_model_fn

    model = BatchCounter(tiny_model(num_classes=5))
    diffusion = create_diffusion("4")
    plan = vtv.build_plan("i2v", diffusion.sampling_timesteps, N)
    vtv.sample_window(diffusion, sampling_model_fn(model, cfg_scale), (3, N, 3, 8, 8), plan.frame_schedule,
                      cond_frames=torch.randn(3, N, 3, 8, 8), cond_mask=plan.cond_mask,
                      history_guidance=history_guidance, model_kwargs={"y": torch.tensor([0, 1, 2])},
                      device="cpu")
    assert model.batches == [batch] * len(model_timesteps_of(plan.frame_schedule))


def test_history_guidance_in_long_video_and_bad_values():
    model = Recorder(tiny_model())
    diffusion = create_diffusion("3")
    given = torch.randn(2, 3, 3, 8, 8)
    video = torch.cat(list(vtv.iter_long_video(diffusion, model, (2, N, 3, 8, 8), 20, 3, given=given,
                                               history_guidance=1.5)), dim=1)
    assert video.shape == (2, 20, 3, 8, 8) and torch.equal(video[:, :3], given)
    assert model.calls and all(x.shape[0] == 4 and (t[2:, :3] == 999).all() for x, t in model.calls)
    _, chunks = vtv.sample_video(create_diffusion("8"), tiny_model(), "diagonal", (2, N, 3, 8, 8),
                                 options={"length": 2}, history_guidance=2.0)  # nothing is given: no guidance
    assert torch.cat(list(chunks), dim=1).shape == (2, 2, 3, 8, 8)
    plan = vtv.build_plan("i2v", diffusion.sampling_timesteps, N)
    for options, message in [({"history_guidance": -1.0}, "history_guidance must be >= 0"),
                             ({"history_guidance": 2.0, "history_noise_level": 1000},
                              r"history_noise_level must lie in \[0, 999\]")]:
        with pytest.raises(ValueError, match=message):
            vtv.sample_window(diffusion, model, (2, N, 3, 8, 8), plan.frame_schedule,
                              cond_frames=torch.randn(2, N, 3, 8, 8), cond_mask=plan.cond_mask, **options)
