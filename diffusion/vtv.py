"""Vectorized-timestep (VTV) presets: which noise level each frame sits at, step by step.

A schedule is a LongTensor (S+1, N) of base-scale levels (0..T-1, -1 = clean). Sampling step k moves frame i
from schedule[k, i] to schedule[k+1, i] (GaussianDiffusion.vtv_step); a frame whose level does not change
waits. Conditioning frames are -1 in every row and are held at their given values. Schedules are built from
`diffusion.sampling_timesteps`, the (respaced) grid the sampler visits, walked from noisiest to clean:
    standard       tau_i(t) = t for every frame (the paper's tau(t) = t * 1)
    i2v            one frame clean (any index, default the first), the others at t
    interpolation  keyframes clean (default first and last), the frames between at t
    transition     last frames of clip A and first frames of clip B clean, the gap at t
    next_frame     M context frames clean, the next K at t
    progressive    tau_i(t) = min(round(c * i * t), t), i = 1..N (paper: c = 0.2), or frame i lagging i * lag
                   steps behind frame 0 (mode "lag"); both start from pure noise
    reverse        frames denoised last to first: frame i lags N - 1 - i steps behind the last frame
    custom         a level expression in i, t, N, T (safe whitelist evaluator) and per-frame overrides
    long           chunk after chunk, each conditioned on the last M frames of the video so far
    diagonal       FIFO / Diffusion-Forcing streaming: a queue of frames at staggered levels, one clean frame
                   out of the front and one noise frame in at the back per step; unbounded, constant memory

Every preset is one entry of PRESETS (its options, the input files it reads, and the function that builds its
window or streams its chunks); `sample_video` samples any of them. "Levels" are base-scale timesteps; the
diffusion's own `num_timesteps` counts its (respaced) steps, `base_num_timesteps` the levels.
"""
import ast
import math
import operator
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .gaussian_diffusion import frame_view, randn_like

CLEAN = -1
CONDITIONING = ("vtv", "replacement")  # how given frames condition a window: clean beside noisy, or scalar-t baseline
REPLACEMENT_PRESETS = ("standard", "i2v", "interpolation", "transition", "next_frame", "long")  # one shared t


@dataclass
class VTVPlan:
    """One window: frame_schedule (S+1, N) base-scale levels, cond_mask (N,) bool (frames given clean)."""

    frame_schedule: torch.Tensor
    cond_mask: torch.Tensor

    @property
    def num_frames(self):
        return self.frame_schedule.shape[1]


def round_half_up(value):
    """Levels are integers; halves round up so 0.5-steps are deterministic across platforms."""
    return math.floor(value + 0.5)


def descending_levels(sampling_timesteps):
    """The sampler's grid from noisiest to cleanest, e.g. [999, 979, ..., 0]."""
    levels = sorted({int(t) for t in sampling_timesteps}, reverse=True)
    if not levels or levels[-1] < 0:
        raise ValueError(f"sampling_timesteps must be non-empty base timesteps >= 0, got {list(sampling_timesteps)}")
    return levels


def resolve_frame_indices(indices, num_frames, name):
    """Python-style frame indices (negative counts from the end) -> sorted unique ints; out of range names it."""
    resolved = set()
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"{name}: frame index {index!r} is not an integer")
        if not -num_frames <= index < num_frames:
            raise ValueError(f"{name}: frame index {index} is out of range for {num_frames} frames")
        resolved.add(int(index) % num_frames)
    return sorted(resolved)


def conditioned_schedule(sampling_timesteps, num_frames, cond_indices=(), name="cond_frames"):
    """Frames in cond_indices clean throughout, every other frame at t: the plan behind most presets."""
    cond = resolve_frame_indices(cond_indices, num_frames, name)
    if len(cond) == num_frames:
        raise ValueError(f"{name} {cond} covers all {num_frames} frames: no frame is left to generate")
    rows = descending_levels(sampling_timesteps) + [CLEAN]
    schedule = torch.tensor(rows, dtype=torch.long)[:, None].repeat(1, num_frames)  # (S+1, N)
    cond_mask = torch.zeros(num_frames, dtype=torch.bool)
    cond_mask[cond] = True
    schedule[:, cond_mask] = CLEAN
    return VTVPlan(schedule, cond_mask)


def with_warmup(sampling_timesteps, rows):
    """Prepend a joint descent from pure noise to each frame's first level (frames wait once they reach it).

    rows: (R, N) levels whose first row may sit below the top of the grid; pure-noise initial frames are only
    valid at the top, so frame i follows max(g, rows[0, i]) for the grid levels g above the lowest start level.
    """
    start = rows[0]
    grid = [g for g in descending_levels(sampling_timesteps) if g > start.min().item()]
    warmup = [torch.maximum(torch.full_like(start, g), start) for g in grid]
    stacked = torch.cat([torch.stack(warmup), rows]) if warmup else rows
    keep = torch.ones(len(stacked), dtype=torch.bool)
    keep[1:] = (stacked[1:] != stacked[:-1]).any(dim=1)  # drop rows where nothing moves
    return stacked[keep]


def progressive_schedule(sampling_timesteps, num_frames, c=0.2):
    """tau_i(t) = min(round(c * i * t), t) for i = 1..N over the grid (first frame least noisy), after warm-up."""
    if not c > 0:
        raise ValueError(f"progressive c must be > 0, got {c}")
    grid = descending_levels(sampling_timesteps)
    rows = [[min(round_half_up(c * i * t), t) for i in range(1, num_frames + 1)] for t in grid]
    rows.append([CLEAN] * num_frames)
    return VTVPlan(with_warmup(grid, torch.tensor(rows, dtype=torch.long)), torch.zeros(num_frames, dtype=torch.bool))


def lag_schedule(sampling_timesteps, num_frames, lag=1):
    """Frame i (from 0) walks the grid lag * i steps behind frame 0: noise rises along the frames (pyramid)."""
    if int(lag) != lag or lag < 1:
        raise ValueError(f"progressive lag must be an integer >= 1, got {lag}")
    path = torch.tensor(descending_levels(sampling_timesteps) + [CLEAN], dtype=torch.long)  # (S+1,)
    num_rows = len(path) + lag * (num_frames - 1)
    step = torch.arange(num_rows)[:, None] - lag * torch.arange(num_frames)[None]  # (rows, N)
    return VTVPlan(path[step.clamp(0, len(path) - 1)], torch.zeros(num_frames, dtype=torch.bool))


# ----------------------------------------------------------------------------- safe level expressions

MAX_EXPRESSION_LENGTH = 1000  # characters (far more than a schedule needs); keeps ast.parse's recursion shallow
MAX_EXPRESSION_DEPTH = 100  # nesting of the parsed expression, so evaluating it stays far from Python's recursion limit
MAX_POWER = 1e300  # a ** b is refused, before it is computed, when |a ** b| would exceed this


def _power(base, exponent):
    """a ** b in floats, refused before computing when the result would be huge or not real.

    Python's int ** int builds 9**9**9 digit by digit (minutes, gigabytes); levels are clamped to [0, T-1] anyway.
    """
    base, exponent = float(base), float(exponent)
    if base == 0 and exponent < 0:
        raise ZeroDivisionError(f"0 ** {exponent:g} divides by zero")
    if base < 0 and not exponent.is_integer():
        raise ValueError(f"a negative base ({base:g}) to a fractional power ({exponent:g}) is not a real number")
    if base != 0 and exponent * math.log10(abs(base)) > math.log10(MAX_POWER):
        raise OverflowError(f"{base:g} ** {exponent:g} exceeds {MAX_POWER:g}")
    return base ** exponent


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCTIONS = {"min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil, "sqrt": math.sqrt,
              "exp": math.exp, "log": math.log, "clip": lambda x, low, high: min(max(x, low), high)}
EXPRESSION_VARIABLES = ("i", "t", "N", "T")
# What evaluating a whitelisted expression can raise: division by zero, overflow, math domain, bad arguments.
# (Not RecursionError or MemoryError: the depth and length bounds and _power keep the walk shallow, numbers bounded.)
_EVALUATION_ERRORS = (ArithmeticError, ValueError, TypeError)


class LevelExpression:
    """An arithmetic expression of i (frame, from 1), t (the step's grid level), N (frames), T (timesteps).

    Parsed with `ast` and walked node by node over a whitelist; nothing is passed to eval. Allowed: numbers,
    the four variables, + - * / // % **, comparisons, and/or/not, `a if cond else b`, and min max abs floor
    ceil sqrt exp log clip(x, low, high). `key` is the config key it came from; every error is a ValueError
    naming the key and the expression (and, when evaluating, the frame and t).
    """

    def __init__(self, text, key="expression"):
        self.text, self.key = str(text), key
        if len(self.text) > MAX_EXPRESSION_LENGTH:
            raise self._error(f"longer than {MAX_EXPRESSION_LENGTH} characters")
        try:
            self.tree = ast.parse(self.text, mode="eval").body
        except SyntaxError as error:
            raise self._error(f"not valid: {error.msg}") from None
        nodes = [(self.tree, 1)]
        while nodes:  # iteratively: depth first, so a deep expression is refused before it is walked recursively
            node, depth = nodes.pop()
            if depth > MAX_EXPRESSION_DEPTH:
                raise self._error(f"nested deeper than {MAX_EXPRESSION_DEPTH} levels")
            nodes.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
        called = {id(node.func) for node in ast.walk(self.tree) if isinstance(node, ast.Call)}
        for node in ast.walk(self.tree):
            self._check(node, called)

    def _error(self, problem):
        shown = self.text if len(self.text) <= 80 else self.text[:60] + f"... ({len(self.text)} characters)"
        return ValueError(f"config key {self.key!r}: schedule expression {shown!r}: {problem}")

    def _check(self, node, called):
        allowed = (ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp, ast.Call, ast.Name, ast.Constant,
                   ast.Load, ast.And, ast.Or, *_BINARY, *_UNARY, *_COMPARE)
        if not isinstance(node, allowed):
            raise self._error(f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Name) and node.id not in EXPRESSION_VARIABLES + tuple(_FUNCTIONS):
            raise self._error(f"unknown name {node.id!r} "
                              f"(variables {EXPRESSION_VARIABLES}, functions {sorted(_FUNCTIONS)})")
        if isinstance(node, ast.Name) and node.id in _FUNCTIONS and id(node) not in called:
            raise self._error(f"{node.id!r} is a function, not a value")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                               or not isinstance(node.value, (int, float))):
            raise self._error(f"constant {node.value!r} is not a number")
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS
                                           or node.keywords):
            raise self._error(f"only calls like min(a, b) to {sorted(_FUNCTIONS)} are allowed")

    def __call__(self, **variables):
        """The level as a finite float; a failure names the frame (i - 1) and t it happened at."""
        where = f"at frame {variables['i'] - 1} (i={variables['i']}), t={variables['t']}"
        try:
            value = self._eval(self.tree, variables)
            level = float(value)  # also refuses a huge int, e.g. floor(1e300) * floor(1e300)
        except _EVALUATION_ERRORS as error:
            raise self._error(f"fails {where}: {type(error).__name__}: {error}") from None
        if not math.isfinite(level):
            raise self._error(f"gives {value!r} {where}, not a finite level")
        return level

    def _eval(self, node, variables):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return variables[node.id]
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._eval(node.left, variables), self._eval(node.right, variables))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, variables))
        if isinstance(node, ast.BoolOp):  # Python's semantics: the deciding operand's value, short-circuited
            for value_node in node.values[:-1]:
                value = self._eval(value_node, variables)
                if bool(value) != isinstance(node.op, ast.And):
                    return value
            return self._eval(node.values[-1], variables)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, variables)
            for op, right_node in zip(node.ops, node.comparators):
                right = self._eval(right_node, variables)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            branch = node.body if self._eval(node.test, variables) else node.orelse
            return self._eval(branch, variables)
        return _FUNCTIONS[node.func.id](*(self._eval(arg, variables) for arg in node.args))  # ast.Call


def expression_schedule(sampling_timesteps, num_frames, expression="t", frame_expressions=None,
                        base_num_timesteps=1000):
    """A user-written schedule: level of frame i at grid level t = expression(i, t, N, T), rounded half up and
    clamped to [0, T-1]; frame_expressions {index: expression or "clean"} override single frames ("clean" =
    a conditioning frame). Levels must not rise as t falls. Starts from pure noise (warm-up)."""
    default = LevelExpression(expression, "expression")
    per_frame = {}
    cond = []
    for index, spec in (frame_expressions or {}).items():
        (frame,) = resolve_frame_indices([index], num_frames, "frame_expressions")
        if str(spec).strip().lower() == "clean":
            cond.append(frame)
        else:
            per_frame[frame] = LevelExpression(spec, f"frame_expressions.{index}")
    if len(cond) == num_frames:
        raise ValueError(f"frame_expressions mark all {num_frames} frames clean: no frame is left to generate")
    grid = descending_levels(sampling_timesteps)
    rows = []
    for t in grid:
        row = []
        for frame in range(num_frames):
            level = per_frame.get(frame, default)(i=frame + 1, t=t, N=num_frames, T=base_num_timesteps)
            row.append(min(max(round_half_up(level), 0), base_num_timesteps - 1))
        rows.append(row)
    rows.append([CLEAN] * num_frames)
    levels = torch.tensor(rows, dtype=torch.long)
    rising = levels[1:] > levels[:-1]
    if rising.any():
        step, frame = rising.nonzero()[0].tolist()
        spec = per_frame.get(frame, default)
        raise ValueError(f"config key {spec.key!r}: custom schedule {spec.text!r} rises for frame {frame}: level "
                         f"{levels[step, frame].item()} at t={grid[step]} -> {levels[step + 1, frame].item()} at "
                         "the next step; levels must not increase as t falls")
    cond_mask = torch.zeros(num_frames, dtype=torch.bool)
    cond_mask[cond] = True
    generated = with_warmup(grid, levels[:, ~cond_mask])  # (R, frames to generate)
    schedule = torch.full((len(generated), num_frames), CLEAN, dtype=torch.long)
    schedule[:, ~cond_mask] = generated
    return VTVPlan(schedule, cond_mask)


# ----------------------------------------------------------------------------- single-window presets

def transition_split(num_frames, frames_a, frames_b):
    """Window layout [last frames_a of A | generated gap | first frames_b of B]."""
    if frames_a < 1 or frames_b < 1:
        raise ValueError(f"transition: frames_a and frames_b must be >= 1, got {frames_a} and {frames_b}")
    if frames_a + frames_b >= num_frames:
        raise ValueError(f"transition: frames_a + frames_b = {frames_a + frames_b} leaves no frame to generate "
                         f"in a {num_frames}-frame window")
    return frames_a, frames_b


def next_frame_split(num_frames, context_frames, predict_frames):
    """(M, K): M context frames then K predicted, M + K <= num_frames; M defaults to num_frames - K."""
    if predict_frames < 1:
        raise ValueError(f"next_frame: predict_frames must be >= 1, got {predict_frames}")
    context = num_frames - predict_frames if context_frames is None else context_frames
    if context < 1:
        raise ValueError(f"next_frame: context_frames must be >= 1, got {context}")
    if context + predict_frames > num_frames:
        raise ValueError(f"next_frame: context_frames + predict_frames = {context + predict_frames} exceeds the "
                         f"model's {num_frames} frames")
    return context, predict_frames


# ----------------------------------------------------------------------------- sampling one window

def sample_window(diffusion, model, shape, frame_schedule, *, method="ddim", eta=0.0, cond_frames=None,
                  cond_mask=None, cond_noise_level=0, history_guidance=1.0, history_noise_level=None, noise=None,
                  model_kwargs=None, device=None, progress=False, clip_denoised=False, denoised_fn=None,
                  generator=None, conditioning="vtv"):
    """Sample with a per-step, per-frame schedule of base-scale levels (-1 = clean).

    frame_schedule: (S + 1, N) or (S + 1, B, N); step k moves frames from row k to row k + 1, and the last
    row must be all -1. cond_frames (B, N, C, H, W) with cond_mask (B, N): those frames stay at their given
    values at every step and in the output. The model sees clean frames at timestep 0, or noised to
    cond_noise_level with fresh noise each step when cond_noise_level > 0 (stabilization).
    history_guidance w != 1 guides every step by the given frames (`history_guided`), their absence shown at
    history_noise_level (None: the top level, pure noise).
    conditioning "replacement" samples the same window the way a scalar-timestep model must (`replacement_sample`):
    the baseline VTV conditioning is measured against, defined where every generated frame walks the grid together.
    """
    if conditioning not in CONDITIONING:
        raise ValueError(f"conditioning must be one of {CONDITIONING}, got {conditioning!r}")
    if device is None:
        device = noise.device if noise is not None else next(model.parameters()).device
    B, N = shape[:2]
    schedule = torch.as_tensor(frame_schedule, dtype=torch.long, device=device)
    if schedule.ndim == 2:
        schedule = schedule[:, None, :].expand(-1, B, -1)
    if schedule.ndim != 3 or schedule.shape[1:] != (B, N) or schedule.shape[0] < 2:
        raise ValueError(f"frame_schedule must be (S+1, {N}) or (S+1, {B}, {N}) with S >= 1, "
                         f"got {tuple(frame_schedule.shape)}")
    if schedule.min() < -1 or schedule.max() >= diffusion.base_num_timesteps:
        raise ValueError(f"frame_schedule levels must lie in [-1, {diffusion.base_num_timesteps - 1}]")
    increasing = schedule[1:] > schedule[:-1]
    if increasing.any():
        step, sample, frame = increasing.nonzero()[0].tolist()
        raise ValueError(f"frame_schedule rises at step {step} for sample {sample} frame {frame}")
    if (schedule[-1] != -1).any():
        frame = (schedule[-1] != -1).nonzero()[0, 1].item()
        raise ValueError(f"frame_schedule must end clean (-1) for every frame; frame {frame} does not")

    x = noise.to(device) if noise is not None else randn_like(torch.empty(shape, device=device), generator)
    if cond_mask is None:
        cond_mask = torch.zeros(B, N, dtype=torch.bool, device=device)
    cond_mask = torch.as_tensor(cond_mask, dtype=torch.bool, device=device).expand(B, N)
    starts_clean = schedule[0] == -1
    if (starts_clean != cond_mask).any():
        sample, frame = (starts_clean != cond_mask).nonzero()[0].tolist()
        raise ValueError(f"sample {sample} frame {frame}: a frame is clean at the first step exactly when it is "
                         f"a conditioning frame (cond_mask {bool(cond_mask[sample, frame])}, first level "
                         f"{schedule[0, sample, frame].item()})")
    if cond_mask.any():
        if cond_frames is None:
            raise ValueError("cond_mask marks conditioning frames but cond_frames is None")
        x = torch.where(frame_view(cond_mask, x), cond_frames.to(device=device, dtype=x.dtype), x)
    if cond_noise_level and not 0 <= cond_noise_level < diffusion.base_num_timesteps:
        raise ValueError(f"cond_noise_level must lie in [0, {diffusion.base_num_timesteps - 1}], "
                         f"got {cond_noise_level}")

    if conditioning == "replacement":
        check_replacement_schedule(diffusion, schedule, cond_mask, cond_noise_level, history_guidance)
        return replacement_sample(diffusion, model, shape, x, cond_mask, method=method, eta=eta, noise=x,
                                  model_kwargs=model_kwargs, device=device, progress=progress,
                                  clip_denoised=clip_denoised, denoised_fn=denoised_fn, generator=generator)
    if history_guidance != 1.0 and cond_mask.any():
        model = history_guided(diffusion, model, x, cond_mask, history_guidance, history_noise_level, generator)
    sqrt_ab_cond = diffusion.base_alphas_cumprod_with_clean[cond_noise_level + 1].sqrt().item()
    for k in tqdm(range(schedule.shape[0] - 1), disable=not progress, desc="VTV sampling"):
        level_from, level_to = schedule[k], schedule[k + 1]
        if torch.equal(level_from, level_to):
            continue
        model_input, model_timesteps = x, level_from.clamp(min=0)
        if cond_noise_level > 0:
            clean = level_from < 0
            noised = sqrt_ab_cond * x + math.sqrt(1 - sqrt_ab_cond**2) * randn_like(x, generator)
            model_input = torch.where(frame_view(clean, x), noised, x)
            model_timesteps = torch.where(clean, cond_noise_level, model_timesteps)
        with torch.no_grad():
            x = diffusion.vtv_step(model, x, level_from, level_to, method=method, eta=eta, model_kwargs=model_kwargs,
                              clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_input=model_input,
                              model_timesteps=model_timesteps, generator=generator)
    return x


def history_guided(diffusion, model, held_frames, cond_mask, weight, noise_level=None, generator=None):
    """model(x, t) guided by the given frames: History Guidance (Song et al. 2025, the Diffusion Forcing line).

    With per-frame timesteps the prediction without the given frames costs no second model: the same frames
    are shown at noise_level (None: the top level, where nothing of them is left; lower: the fractional
    variant) with fresh noise each call, next to the clean ones, in one call on a batch twice as large. The
    noise estimate becomes without + weight * (with - without); a learned variance comes from the branch with
    the frames, as classifier-free guidance does. held_frames (B, N, C, H, W) holds the given frames where
    cond_mask (B, N) is set. A model that guides by class as well makes one call on four times the batch.
    """
    if not weight >= 0:
        raise ValueError(f"history_guidance must be >= 0 (1 = off), got {weight}")
    top = diffusion.base_num_timesteps - 1
    level = top if noise_level is None else noise_level
    if not 0 <= level <= top:
        raise ValueError(f"history_noise_level must lie in [0, {top}] (null: {top}), got {noise_level}")
    alpha_bar = diffusion.base_alphas_cumprod_with_clean[level + 1].item()
    held = frame_view(cond_mask, held_frames)

    def guided(x, t, **kwargs):  # x (B, N, C, H, W), t (B, N)
        hidden = math.sqrt(alpha_bar) * held_frames + math.sqrt(1 - alpha_bar) * randn_like(x, generator)
        x_without = torch.where(held, hidden.to(x.dtype), x)
        t_without = torch.where(cond_mask, level, t)
        doubled = {key: torch.cat([value, value]) if torch.is_tensor(value) else value
                   for key, value in kwargs.items()}
        output = model(torch.cat([x, x_without]), torch.cat([t, t_without]), **doubled)  # (2B, N, C or 2C, H, W)
        if isinstance(output, tuple):
            output = output[0]
        with_history, without = output.chunk(2)
        channels = x.shape[2]
        eps = without[:, :, :channels] + weight * (with_history[:, :, :channels] - without[:, :, :channels])
        return torch.cat([eps, with_history[:, :, channels:]], dim=2)

    return guided


def check_replacement_schedule(diffusion, schedule, cond_mask, cond_noise_level, history_guidance):
    """Replacement is defined for one shared t: every generated frame on the grid's path, the given ones clean."""
    if cond_noise_level or history_guidance != 1.0:
        raise ValueError("conditioning 'replacement' shows the given frames noised to the shared t, so it takes "
                         f"neither cond_noise_level ({cond_noise_level}) nor history_guidance ({history_guidance})")
    path = torch.tensor(descending_levels(diffusion.sampling_timesteps) + [CLEAN], device=schedule.device)
    shared = torch.where(cond_mask, CLEAN, path[:, None, None]) if len(path) == len(schedule) else None
    if shared is None or not torch.equal(schedule, shared):
        raise ValueError("conditioning 'replacement' needs every generated frame at one shared timestep (presets "
                         f"{REPLACEMENT_PRESETS}); this schedule gives frames different levels")


def replacement_sample(diffusion, model, shape, cond_frames, cond_mask, *, method="ddim", eta=0.0, noise=None,
                            model_kwargs=None, device=None, progress=False, clip_denoised=False,
                            denoised_fn=None, generator=None):
    """Frame-conditioned sampling for scalar-timestep models: the "replacement" method (Ho et al. 2022).

    The baseline that VTV conditioning is compared with: a model trained with one t per clip cannot be shown
    clean frames next to noisy ones, so every frame shares t, and before each step the known frames
    (cond_mask (B, N) or (N,)) are overwritten with q_sample(cond_frames, t), fresh noise each step. Steps are
    vtv_step's between neighbouring grid levels, i.e. the respaced DDIM / DDPM step of ddim_sample_loop; with
    no known frames this is plain sampling. The output holds the known frames exactly.
    """
    if device is None:
        device = noise.device if noise is not None else next(model.parameters()).device
    B, N = shape[:2]
    x = noise.to(device) if noise is not None else randn_like(torch.empty(shape, device=device), generator)
    known = frame_view(torch.as_tensor(cond_mask, dtype=torch.bool, device=device).expand(B, N), x)
    cond_frames = cond_frames.to(device=device, dtype=x.dtype)
    grid = diffusion.sampling_timesteps  # base level of respaced index k (ascending)
    for index in tqdm(range(diffusion.num_timesteps)[::-1], disable=not progress, desc="replacement sampling"):
        t = torch.full((B,), index, device=device, dtype=torch.long)  # respaced index, as q_sample takes it
        x = torch.where(known, diffusion.q_sample(cond_frames, t, noise=randn_like(x, generator)), x)
        level_from = torch.full((B, N), grid[index], device=device, dtype=torch.long)
        level_to = torch.full_like(level_from, grid[index - 1] if index > 0 else -1)
        with torch.no_grad():
            x = diffusion.vtv_step(model, x, level_from, level_to, method=method, eta=eta, model_kwargs=model_kwargs,
                              clip_denoised=clip_denoised, denoised_fn=denoised_fn, generator=generator)
    return torch.where(known, cond_frames, x)


# ----------------------------------------------------------------------------- long video (chunk after chunk)

def plan_long_video(num_frames, context_frames, length, given_frames=0):
    """Windows [(start, num_context, num_new)] that extend `given_frames` frames to `length`.

    Each window is at most num_frames long; its first num_context frames are the last frames so far (held
    clean) and it adds num_new frames. Windows add num_frames - context_frames frames; the last one takes
    more context instead of a shorter window, and a short given clip is used whole.
    """
    if not 1 <= context_frames < num_frames:
        raise ValueError(f"long: context_frames must lie in [1, {num_frames - 1}], got {context_frames}")
    if length <= given_frames:
        raise ValueError(f"long: length {length} must exceed the {given_frames} given frames")
    windows, end = [], given_frames
    while end < length:
        new = min(num_frames - context_frames, length - end)
        context = min(num_frames - new, end)
        new = min(num_frames - context, length - end)
        windows.append((end - context, context, new))
        end += new
    return windows


def iter_long_video(diffusion, model, shape, length, context_frames, *, given=None, method="ddim", eta=0.0,
                    cond_noise_level=0, history_guidance=1.0, history_noise_level=None, model_kwargs=None,
                    noise_fn=None, device=None, output_device="cpu", clip_denoised=False, progress=False,
                    generator=None, conditioning="vtv", frame_kwargs=None):
    """Yield a video of `length` frames chunk by chunk (B, k, C, H, W) on output_device, given frames first.

    shape: (B, N, C, H, W), N the model's window. Only the current window and the last N frames stay on
    `device`, so memory does not grow with length. noise_fn(n) -> (B, n, C, H, W) fresh noise for n frames;
    generator (one, or one per sample) drives the sampler's own draws (DDPM / eta > 0 / stabilization noise).
    frame_kwargs: model kwargs laid along the output video, (B, length or 1, ...) (a prompt per frame); each
    window sees its own frames' slice.
    """
    batch_size, num_frames, *frame_shape = shape
    device = torch.device(device) if device is not None else next(model.parameters()).device
    noise_fn = noise_fn or frame_noise(batch_size, frame_shape, device)
    given_frames = 0 if given is None else given.shape[1]
    windows = plan_long_video(num_frames, context_frames, length, given_frames)
    tail = torch.zeros(batch_size, 0, *frame_shape, device=device)
    if given is not None:
        tail = given[:, -num_frames:].to(device)
        yield given.to(output_device)
    frame_kwargs = check_frame_kwargs(frame_kwargs, length)
    for start, context, new in tqdm(windows, desc="long video", disable=not progress):
        window_kwargs = {**(model_kwargs or {}), **{key: value if value.shape[1] == 1 else
                                                    value[:, start:start + context + new]
                                                    for key, value in frame_kwargs.items()}}
        plan = conditioned_schedule(diffusion.sampling_timesteps, context + new, range(context), "context_frames")
        cond_frames = torch.cat([tail[:, tail.shape[1] - context:],
                                 torch.zeros(batch_size, new, *frame_shape, device=device)], dim=1)
        window = sample_window(
            diffusion, model, (batch_size, context + new, *frame_shape), plan.frame_schedule, method=method, eta=eta,
            cond_frames=cond_frames, cond_mask=plan.cond_mask.to(device), cond_noise_level=cond_noise_level,
            history_guidance=history_guidance, history_noise_level=history_noise_level, noise=noise_fn(context + new),
            model_kwargs=window_kwargs, device=device, clip_denoised=clip_denoised, generator=generator,
            conditioning=conditioning)
        yield window[:, context:].to(output_device)
        tail = window


def check_frame_kwargs(frame_kwargs, length):
    """frame_kwargs {name: tensor (B, length or 1, ...)}, with an error naming the kwarg whose frames do not fit."""
    frame_kwargs = dict(frame_kwargs or {})
    for key, value in frame_kwargs.items():
        if value.dim() < 2 or value.shape[1] not in (1, length):
            raise ValueError(f"frame kwarg {key!r} must hold 1 or {length} frames (those of the output video) along "
                             f"dim 1, got shape {tuple(value.shape)}")
    return frame_kwargs


def long_video_schedule(sampling_timesteps, num_frames, context_frames, length, given_frames=0, max_frames=None):
    """Levels of every output frame at every sampling step of a long video (rows = steps, NaN = not started).

    Window w fills rows [w * (S+1), (w+1) * (S+1)); frames before it are clean, given frames clean from row 0.
    max_frames keeps the first frames only (a heatmap of a 1024-frame video need not be drawn in full).
    """
    windows = plan_long_video(num_frames, context_frames, length, given_frames)
    shown = length if max_frames is None else min(length, max_frames)
    path = np.array(descending_levels(sampling_timesteps) + [CLEAN], dtype=np.float64)
    steps = len(path)
    windows = [w for w in windows if w[0] < shown]
    levels = np.full((steps * len(windows), shown), np.nan)
    levels[:, :min(given_frames, shown)] = CLEAN
    for w, (start, context, new) in enumerate(windows):
        rows = slice(w * steps, (w + 1) * steps)
        levels[rows, :start + context] = CLEAN
        levels[rows, start + context:min(start + context + new, shown)] = path[:, None]
        levels[(w + 1) * steps:, :min(start + context + new, shown)] = CLEAN
    return levels


# ----------------------------------------------------------------------------- diagonal streaming

def diagonal_levels(sampling_timesteps, queue_length):
    """queue_length levels from the grid, ascending; the grid's own levels when it has exactly that many."""
    grid = sorted(descending_levels(sampling_timesteps))
    if len(grid) < queue_length:
        raise ValueError(f"diagonal: a queue of {queue_length} frames (partitions x num_frames) needs at least "
                         f"{queue_length} sampling steps, got {len(grid)}; raise num_sampling_steps")
    picks = np.linspace(0, len(grid) - 1, queue_length).round().astype(int)
    return [grid[k] for k in picks]


def diagonal_ramp(queue_length):
    """Warm-up rows of level indices (Q rows, Q positions): position j goes from Q (pure noise) down to j + 1.

    Row r holds max(j + 1, Q - r): front frames lead, so the queue reaches the staggered steady state
    (position j at index j + 1) after Q - 1 steps, every frame having passed each index in turn.
    """
    positions = torch.arange(1, queue_length + 1)
    return torch.stack([positions.clamp(min=queue_length - r) for r in range(queue_length)])


def iter_diagonal_video(diffusion, model, shape, length=None, partitions=1, *, method="ddim", eta=0.0,
                        model_kwargs=None, noise_fn=None, device=None, output_device="cpu", clip_denoised=False,
                        progress=False, generator=None):
    """Yield clean frames (B, 1, C, H, W) one by one from a queue of partitions * N frames at staggered levels.

    After the warm-up ramp, every step moves queue position j from level index j + 1 to j (index 0 = clean),
    emits the front frame and appends a pure-noise frame at the back. The queue is denoised as `partitions`
    windows of N frames (FIFO-Diffusion's latent partitioning), so memory is constant. length=None never stops.
    """
    batch_size, num_frames, *frame_shape = shape
    device = torch.device(device) if device is not None else next(model.parameters()).device
    noise_fn = noise_fn or frame_noise(batch_size, frame_shape, device)
    queue_length = partitions * num_frames
    levels = torch.tensor([CLEAN] + diagonal_levels(diffusion.sampling_timesteps, queue_length), device=device)
    steady = torch.arange(1, queue_length + 1, device=device)  # level index of each position before a step

    def advance(queue, index_from, index_to):
        moved = []
        for window, start in zip(queue.split(num_frames, dim=1), range(0, queue_length, num_frames)):
            level_from = levels[index_from[start:start + num_frames]].expand(batch_size, -1)  # (B, N)
            level_to = levels[index_to[start:start + num_frames]].expand(batch_size, -1)
            if not torch.equal(level_from, level_to):
                with torch.no_grad():
                    window = diffusion.vtv_step(model, window, level_from, level_to, method=method, eta=eta,
                                                model_kwargs=model_kwargs, clip_denoised=clip_denoised,
                                                generator=generator)
            moved.append(window)
        return torch.cat(moved, dim=1)

    queue = noise_fn(queue_length)  # (B, Q, C, H, W)
    ramp = diagonal_ramp(queue_length).to(device)
    bar = tqdm(total=None if length is None else queue_length - 1 + length, desc="diagonal", disable=not progress)
    for row in range(1, queue_length):
        queue = advance(queue, ramp[row - 1], ramp[row])
        bar.update()
    emitted = 0
    while length is None or emitted < length:
        queue = advance(queue, steady, steady - 1)
        yield queue[:, :1].to(output_device)
        queue = torch.cat([queue[:, 1:], noise_fn(1)], dim=1)
        emitted += 1
        bar.update()
    bar.close()


def diagonal_video_schedule(sampling_timesteps, num_frames, length, partitions=1, max_frames=None):
    """Levels of every output frame at every step of iter_diagonal_video (rows = steps, NaN = not yet queued)."""
    queue_length = partitions * num_frames
    levels = np.array([CLEAN] + diagonal_levels(sampling_timesteps, queue_length), dtype=np.float64)
    shown = length if max_frames is None else min(length, max_frames)
    num_rows = queue_length + shown  # the ramp's Q rows, then one row after each steady step
    index = np.full((num_rows, shown), -2)
    ramp = diagonal_ramp(queue_length).numpy()
    in_queue = min(queue_length, shown)
    index[:queue_length, :in_queue] = ramp[:, :in_queue]
    for step in range(shown):
        frames = np.arange(shown)
        position = frames - step  # after steady step `step`, frame f sits at position f - step
        row = np.where(position < 0, 0, np.where(position <= queue_length, position, -2))
        index[queue_length + step] = row
    return np.where(index == -2, np.nan, levels[index.clip(0)])


# ----------------------------------------------------------------------------- the presets

def standard_plan(grid, num_frames, base_num_timesteps):
    return conditioned_schedule(grid, num_frames)


def i2v_plan(grid, num_frames, base_num_timesteps, cond_frame):
    return conditioned_schedule(grid, num_frames, [cond_frame], "cond_frame")


def interpolation_plan(grid, num_frames, base_num_timesteps, keyframes):
    keyframes = list(keyframes) if keyframes is not None else [0, num_frames - 1]
    if not keyframes:
        raise ValueError("interpolation: keyframes is empty; give at least one frame index")
    return conditioned_schedule(grid, num_frames, keyframes, "keyframes")


def transition_plan(grid, num_frames, base_num_timesteps, frames_a, frames_b):
    frames_a, frames_b = transition_split(num_frames, frames_a, frames_b)
    clean = list(range(frames_a)) + list(range(num_frames - frames_b, num_frames))
    return conditioned_schedule(grid, num_frames, clean, "frames_a/frames_b")


def transition_window(clips, num_frames, frames_a, frames_b):
    """[last frames_a of clip A | gap | first frames_b of clip B]; the gap's values are never used."""
    clip_a, clip_b = clips
    gap = torch.zeros_like(clip_a[:, : num_frames - frames_a - frames_b])
    return torch.cat([clip_a[:, clip_a.shape[1] - frames_a:], gap, clip_b[:, :frames_b]], dim=1)


def next_frame_plan(grid, num_frames, base_num_timesteps, context_frames, predict_frames):
    context, predict = next_frame_split(num_frames, context_frames, predict_frames)
    return conditioned_schedule(grid, context + predict, range(context), "context_frames")


def progressive_plan(grid, num_frames, base_num_timesteps, progressive_mode, progressive_c, progressive_lag):
    if progressive_mode == "scale":
        return progressive_schedule(grid, num_frames, progressive_c)
    if progressive_mode == "lag":
        return lag_schedule(grid, num_frames, progressive_lag)
    raise ValueError(f"progressive mode must be 'scale' or 'lag', got {progressive_mode!r}")


def reverse_plan(grid, num_frames, base_num_timesteps):
    """Frames denoised last to first: frame i walks the grid N - 1 - i steps behind the last frame."""
    plan = lag_schedule(grid, num_frames, 1)
    return VTVPlan(plan.frame_schedule.flip(1), plan.cond_mask)


def custom_plan(grid, num_frames, base_num_timesteps, expression, frame_expressions):
    return expression_schedule(grid, num_frames, expression, frame_expressions, base_num_timesteps)


HEATMAP_FRAMES = 64  # streamed presets' schedules (the heatmaps) show the first frames only


def long_stream(diffusion, model_fn, shape, clips, sampler, length, context_frames):
    num_frames = shape[1]
    context = context_frames if context_frames is not None else num_frames // 2
    given = clips[0] if clips else None
    given_frames = 0 if given is None else given.shape[1]
    schedule = long_video_schedule(diffusion.sampling_timesteps, num_frames, context, length, given_frames,
                                   max_frames=HEATMAP_FRAMES)
    return schedule, iter_long_video(diffusion, model_fn, shape, length, context, given=given, **sampler)


def diagonal_stream(diffusion, model_fn, shape, clips, sampler, length, partitions):
    frame_kwargs = check_frame_kwargs(sampler.pop("frame_kwargs"), length)
    if any(value.shape[1] != 1 for value in frame_kwargs.values()):
        raise ValueError(f"diagonal denoises frames of different output positions in one window, so it takes one "
                         f"value per video of {sorted(frame_kwargs)} (one prompt), not one per frame")
    grid = diffusion.sampling_timesteps
    partitions = partitions if partitions is not None else max(1, len(grid) // shape[1])
    schedule = diagonal_video_schedule(grid, shape[1], length, partitions, max_frames=HEATMAP_FRAMES)
    given_only = ("cond_noise_level", "history_guidance", "history_noise_level", "conditioning")  # nothing is given
    sampler = {key: value for key, value in sampler.items() if key not in given_only}
    sampler["model_kwargs"] = {**(sampler["model_kwargs"] or {}), **frame_kwargs}
    return schedule, iter_diagonal_video(diffusion, model_fn, shape, length, partitions, **sampler)


@dataclass(frozen=True)
class Preset:
    """How one preset samples: a single window (`plan`) or chunk after chunk (`stream`).

    plan(grid, num_frames, base_num_timesteps, **options) -> VTVPlan; its clean frames are taken from the clips,
    placed by window(clips, num_frames, **options) (default: the first clip's first frames).
    stream(diffusion, model_fn, shape, clips, sampler, **options) -> (schedule, chunks).
    clips: the clips it conditions on, in order (a single-window preset samples a missing one with `standard`);
    input_keys: the sample config keys whose files provide them.
    """

    options: tuple = ()
    input_keys: tuple = ()
    clips: int = 1
    plan: Optional[Callable] = None
    window: Optional[Callable] = None
    stream: Optional[Callable] = None


# Each option's default, shared by the presets that take it and by the sample config (None: see the preset).
OPTION_DEFAULTS = {
    "cond_frame": 0, "keyframes": None, "frames_a": 4, "frames_b": 4, "context_frames": None, "predict_frames": 1,
    "progressive_mode": "scale", "progressive_c": 0.2, "progressive_lag": 1, "expression": "t",
    "frame_expressions": {}, "length": 128, "partitions": None,
}
PRESETS = {
    "standard": Preset(plan=standard_plan),
    "i2v": Preset(("cond_frame",), ("image",), plan=i2v_plan),
    "interpolation": Preset(("keyframes",), ("first_image", "last_image", "keyframe_images", "video"),
                            plan=interpolation_plan),
    "transition": Preset(("frames_a", "frames_b"), ("video_a", "video_b"), clips=2, plan=transition_plan,
                         window=transition_window),
    "next_frame": Preset(("context_frames", "predict_frames"), ("video",), plan=next_frame_plan),
    "progressive": Preset(("progressive_mode", "progressive_c", "progressive_lag"), plan=progressive_plan),
    "reverse": Preset(plan=reverse_plan),
    "custom": Preset(("expression", "frame_expressions"), ("video",), plan=custom_plan),
    "long": Preset(("length", "context_frames"), ("video",), stream=long_stream),
    "diagonal": Preset(("length", "partitions"), stream=diagonal_stream),
}


def preset_options(preset, options=None):
    """The preset's options: those given (None or missing: the default), refusing any it does not take."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(PRESETS[preset].options))
    if unknown:
        raise ValueError(f"preset {preset!r} takes options {PRESETS[preset].options}, not {unknown}")
    return {name: options[name] if options.get(name) is not None else OPTION_DEFAULTS[name]
            for name in PRESETS[preset].options}


def build_plan(preset, sampling_timesteps, num_frames, base_num_timesteps=1000, **options):
    """The VTVPlan of a single-window preset."""
    options = preset_options(preset, options)
    if PRESETS[preset].plan is None:
        raise ValueError(f"preset {preset!r} samples chunk after chunk: use sample_video")
    return PRESETS[preset].plan(sampling_timesteps, num_frames, base_num_timesteps, **options)


def output_length(preset, num_frames, options=None):
    """Frames in each video the preset writes."""
    options = preset_options(preset, options)
    if PRESETS[preset].stream is not None:
        return options["length"]
    return build_plan(preset, [0], num_frames, **options).num_frames


def default_clip_denoised(in_channels):
    """Clip x0 estimates to [-1, 1] for pixel models (3 channels, as IDDPM), not for latent ones (unbounded)."""
    return in_channels == 3


def frame_noise(batch_size, frame_shape, device, generators=None):
    """noise_fn(n) -> (B, n, *frame_shape): from the global RNG, or each video from its own generator, so
    batching does not change a video."""
    if generators is None:
        return lambda num: torch.randn(batch_size, num, *frame_shape, device=device)
    return lambda num: torch.stack([torch.randn(num, *frame_shape, generator=g, device=device) for g in generators])


def sample_video(diffusion, model_fn, preset, shape, *, options=None, clips=(), noise_fn=None, method="ddim",
                 eta=0.0, model_kwargs=None, device=None, generator=None, clip_denoised=False, cond_noise_level=0,
                 history_guidance=1.0, history_noise_level=None, conditioning="vtv", progress=False,
                 frame_kwargs=None):
    """Sample a batch with any preset: (schedule, chunks).

    schedule: the level matrix drawn as the heatmap (rows = steps, columns = frames; -1 clean, NaN not started);
    chunks: an iterator of (B, k, C, H, W) on the CPU that make up the videos (one chunk for single-window
    presets; streamed ones hold only a window on `device`). shape (B, N, C, H, W), N the model's window.
    clips: model-space clips (1 or B, N, C, H, W) the preset conditions on, in its order; a missing one (None, or
    past the list's end) is sampled with `standard` first (streamed presets start from noise instead).
    generator: one, or one per video, for the sampler's own draws; noise_fn(n) gives initial noise for n frames.
    conditioning: "vtv", or "replacement" (the scalar-timestep baseline) for the presets in REPLACEMENT_PRESETS.
    frame_kwargs: model kwargs laid along the output video's frames, tensors (B, output length or 1, ...): the
    text of a prompt per frame, which streamed presets slice window by window.
    """
    if conditioning == "replacement" and preset not in REPLACEMENT_PRESETS:
        raise ValueError(f"conditioning 'replacement' needs one shared timestep, which preset {preset!r} does not "
                         f"have; use one of {REPLACEMENT_PRESETS}")
    batch_size, num_frames, *frame_shape = shape
    device = torch.device(device) if device is not None else next(model_fn.parameters()).device
    noise_fn = noise_fn or frame_noise(batch_size, frame_shape, device)
    options = preset_options(preset, options)
    clips = [None if clip is None else clip.to(device).expand(batch_size, *clip.shape[1:]) for clip in clips]
    sampler = dict(method=method, eta=eta, model_kwargs=model_kwargs, device=device, generator=generator,
                   clip_denoised=clip_denoised, noise_fn=noise_fn, cond_noise_level=cond_noise_level,
                   history_guidance=history_guidance, history_noise_level=history_noise_level,
                   conditioning=conditioning, progress=progress)
    if PRESETS[preset].stream is not None:
        return PRESETS[preset].stream(diffusion, model_fn, shape, clips, {**sampler, "frame_kwargs": frame_kwargs},
                                      **options)
    frames = build_plan(preset, diffusion.sampling_timesteps, num_frames, diffusion.base_num_timesteps,
                        **options).num_frames
    sampler["model_kwargs"] = {**(model_kwargs or {}), **check_frame_kwargs(frame_kwargs, frames)}
    return sample_single_window(diffusion, model_fn, preset, shape, options, clips, sampler)


def sample_single_window(diffusion, model_fn, preset, shape, options, clips, sampler):
    batch_size, num_frames, *frame_shape = shape
    plan = PRESETS[preset].plan(diffusion.sampling_timesteps, num_frames, diffusion.base_num_timesteps, **options)
    noise_fn = sampler.pop("noise_fn")
    cond_frames = None
    if plan.cond_mask.any():
        clips = list(clips) + [None] * (PRESETS[preset].clips - len(clips))
        for index in range(PRESETS[preset].clips):
            if clips[index] is None:
                _, (clip,) = sample_single_window(diffusion, model_fn, "standard", shape, {}, [],
                                                  {**sampler, "noise_fn": noise_fn, "progress": False})
                clips[index] = clip.to(sampler["device"])
        window = PRESETS[preset].window
        cond_frames = window(clips, num_frames, **options) if window else clips[0][:, : plan.num_frames]
    video = sample_window(diffusion, model_fn, (batch_size, plan.num_frames, *frame_shape), plan.frame_schedule,
                          cond_frames=cond_frames, cond_mask=plan.cond_mask.to(sampler["device"]),
                          noise=noise_fn(plan.num_frames), **sampler)
    return plan.frame_schedule.numpy(), iter([video.cpu()])
