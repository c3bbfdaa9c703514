"""What a job asks a scheduler for (mem_mb, runtime in minutes), sized from the config and the model.

Imported by the rules when the workflow loads: no torch, no numpy. The estimates are deliberately
generous (a job killed at its limit costs far more than an idle reservation) and every constant that
sets them lives here. Measured on this project's reference machine (2-core x86 CPU, one thread per job):
MLP7 of width 128 on 16 000 MNIST-1D samples trains 600 epochs in 170 s, i.e. ~4e10 FLOP/s and
~2 ms per step; the estimate below gives ~7 min for that job.
"""

from __future__ import annotations

import math
import os

from .config import N_CLASSES as DATASET_CLASSES
from .config import INPUT_SHAPE, dataset_sizes, layer_widths, model_arch, n_flipped, record_epochs

INPUT_DIM = {name: math.prod(shape) for name, shape in INPUT_SHAPE.items()}
N_CLASSES = 10
# throughput assumed for the runtime estimate: FLOP/s per CPU thread, FLOP/s of one GPU, and the cost of one
# optimiser step that does not depend on its size (Python, kernel launches)
CPU_FLOPS_PER_THREAD = 2e10
GPU_FLOPS = 2e12  # fp32 matmuls of a few hundred columns reach a small fraction of peak
STEP_OVERHEAD_S = {"cpu": 5e-4, "gpu": 1e-3}
RUNTIME_MARGIN = 3.0  # estimate × margin + fixed start-up allowance
RUNTIME_FIXED_MIN = 10
BASE_MEM_MB = 1500  # Python, torch, xarray and zarr imported, before any data


def n_parameters(in_dim: int, hidden: list[int], n_classes: int = N_CLASSES) -> int:
    widths = [in_dim, *hidden, n_classes]
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))


def _conv_cost(c_in: int, c_out: int, kernel: int, dims: int, positions: int, bias: bool) -> tuple[int, int]:
    """(parameters, forward FLOPs) of one convolution producing `positions` outputs per channel."""
    weights = c_in * c_out * kernel ** dims
    return weights + bias * c_out, 2 * weights * positions


def _halved(positions: tuple[int, ...], ceil: bool) -> tuple[int, ...]:
    """Positions per dimension after a pool of 2 (floor) or a stride-2 conv with padding 1 (ceil)."""
    return tuple(-(-n // 2) if ceil else n // 2 for n in positions)


def model_cost(entry: dict, in_shape: tuple[int, ...], n_classes: int = N_CLASSES) -> tuple[int, int, int]:
    """(parameters, forward FLOPs per sample, activation floats per sample) of a model entry (ddscope.models),
    counting weights and the multiply-adds of linear, conv and attention layers (2 FLOPs each)."""
    arch, k = model_arch(entry), entry.get("width")
    channels, spatial = in_shape[0], tuple(in_shape[1:])
    dims, in_dim = len(spatial), math.prod(in_shape)
    if arch == "mlp":
        widths = [in_dim, *entry["hidden"], n_classes]
        weights = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        return n_parameters(in_dim, entry["hidden"], n_classes), 2 * weights, sum(widths)
    last = layer_widths(entry)[-1]  # the classifier's input
    params, flops, acts = (last + 1) * n_classes, 2 * last * n_classes, in_dim
    if arch == "cnn":  # conv (bias) + BatchNorm per stage; stages 2-4 see the positions the previous pool left
        c_in, pos = channels, spatial
        for i, c in enumerate((k, 2 * k, 4 * k, 8 * k)):
            pos = _halved(pos, ceil=False) if i in (2, 3) else pos
            p, f = _conv_cost(c_in, c, 3, dims, math.prod(pos), bias=True)
            params, flops, acts, c_in = params + p + 2 * c, flops + f, acts + c * math.prod(pos), c
    elif arch == "resnet18":  # stem, then two pre-activation blocks per stage (BatchNorm on each block's input)
        p, flops = _conv_cost(channels, k, 3, dims, math.prod(spatial), bias=False)
        params, c_in, pos = params + p, k, spatial
        for c, stride in ((k, 1), (2 * k, 2), (4 * k, 2), (8 * k, 2)):
            for s in (stride, 1):
                pos = _halved(pos, ceil=True) if s == 2 else pos
                n = math.prod(pos)
                for cost in (_conv_cost(c_in, c, 3, dims, n, False), _conv_cost(c, c, 3, dims, n, False),
                             _conv_cost(c_in, c, 1, dims, n, False) if (s, c_in) != (1, c) else (0, 0)):
                    params, flops = params + cost[0], flops + cost[1]
                params, acts, c_in = params + 2 * (c_in + c), acts + 3 * c * n, c
    else:  # vit: patch embedding, position embedding (and class token), pre-norm blocks, final LayerNorm
        patch, ratio = entry["patch"], entry.get("mlp_ratio", 4)
        tokens = math.prod(n // patch for n in spatial) + (entry.get("pool", "cls") == "cls")
        p, f = _conv_cost(channels, k, patch, dims, tokens, bias=True)
        params += p + tokens * k + (entry.get("pool", "cls") == "cls") * k + 2 * k  # position, class token, norm
        flops += f
        per_block = 4 * k * k + 4 * k + 2 * ratio * k * k + ratio * k + k + 4 * k
        params += entry["depth"] * per_block
        flops += entry["depth"] * tokens * (2 * (4 + 2 * ratio) * k * k + 4 * tokens * k)
        acts += entry["depth"] * tokens * (6 + ratio) * k
    return params, flops, acts


def _round_mb(mb: float) -> int:
    return int(math.ceil(mb / 256) * 256)


def train_mem_mb(config: dict, model: str, members: int = 1) -> int:
    """Memory of one training job of `members` runs (a stack shares the dataset): the dataset (numpy copy and
    tensor), and per run weights with Adam state, one evaluation batch through every layer and the
    recording of one epoch, plus the base."""
    d, t = config["dataset"], config["train"]
    n_train, n_test = dataset_sizes(d)
    entry = config["models"][model]
    params, _, acts = model_cost(entry, INPUT_SHAPE[d["name"]])
    data = 2 * (n_train + n_test) * INPUT_DIM[d["name"]] * 4
    weights = 4 * params * 4  # weights, gradients, Adam's two moments
    n_probes = sum(config["probes"].values())
    activations = (min(t["eval_batch_size"], n_train) + t["batch_size"]) * acts * 4 * 3
    recording = 4 * n_probes * (sum(layer_widths(entry)) + N_CLASSES) * 4  # a few epochs queued for the writer
    return _round_mb(BASE_MEM_MB + 1.5 * (data + members * (weights + activations + recording)) / 2**20)


def train_runtime_min(config: dict, model: str, members: int = 1) -> int:
    """Wall-time limit of one training job of `members` runs (minutes): FLOPs of training and evaluation at
    the assumed throughput of the job's device, plus a per-step overhead, times a margin. A stack is given
    the time of its runs one after another (what it takes where a batched step is not exact)."""
    d, t = config["dataset"], config["train"]
    n_train, n_test = dataset_sizes(d)
    _, forward, _ = model_cost(config["models"][model], INPUT_SHAPE[d["name"]])
    n_evals = t["epochs"] // t["eval_every"] + 1
    # a training step costs about three forward passes (the backward two)
    flops = 3 * forward * n_train * t["epochs"] + forward * (n_train + n_test) * n_evals
    steps = math.ceil(n_train / t["batch_size"]) * t["epochs"]
    if t["gpus"] > 0:
        seconds = flops / GPU_FLOPS + steps * STEP_OVERHEAD_S["gpu"]
    else:
        seconds = flops / (CPU_FLOPS_PER_THREAD * t["threads"]) + steps * STEP_OVERHEAD_S["cpu"]
    return int(math.ceil(RUNTIME_MARGIN * members * seconds / 60 + RUNTIME_FIXED_MIN))


RECORD_ITEMSIZE = {"float16": 2, "float32": 4}


def recorded_shape(config: dict, noise_rate: float | None = None) -> tuple[int, int]:
    """(recorded epochs, probe samples) of one run's activations.zarr. The noisy probes are at most the run's
    flipped labels: a run at `noise_rate` 0 has none; without a rate, every probe the config asks for."""
    n_epochs = len(record_epochs(config["record"], config["train"]["epochs"]))
    probes = config["probes"]
    n_noisy = probes["noisy"]
    if noise_rate is not None:
        n_noisy = min(n_noisy, n_flipped(noise_rate, dataset_sizes(config["dataset"])[0]))
    return n_epochs, probes["clean"] + n_noisy + probes["test"]


def activation_store_bytes(config: dict, model: str, noise_rate: float | None = None) -> int:
    """Uncompressed size of one run's activations.zarr (ddscope/recording.py) in bytes.

    Per recorded epoch E: every probe's activations of every recorded layer (config.layer_widths: an MLP's
    hidden layers) and its K logits, and the output weights once (w_out, K x width_L), at record.dtype; the probe coordinates (sample, y_assigned, y_original:
    int64; subset: 5 characters of UTF-32) and the epochs (int64) once:

        E x (probes x (sum of widths + K) + K x width_L) x itemsize + probes x (3 x 8 + 20) + E x 8
    """
    widths = layer_widths(config["models"][model])
    n_classes = DATASET_CLASSES[config["dataset"]["name"]]
    n_epochs, n_probes = recorded_shape(config, noise_rate)
    per_epoch = n_probes * (sum(widths) + n_classes) + n_classes * widths[-1]
    return n_epochs * per_epoch * RECORD_ITEMSIZE[config["record"]["dtype"]] + n_probes * (3 * 8 + 20) + n_epochs * 8


def activations_mb(config: dict, model: str) -> float:
    """Size of one run's recorded activations of its widest layer over all recorded epochs, as float32."""
    n_epochs, n_probes = recorded_shape(config)
    return n_epochs * n_probes * max(layer_widths(config["models"][model])) * 4 / 2**20


def extract_mem_mb(config: dict, model: str, analysis: str) -> int:
    """Memory of one extract job: a few float32 copies of the widest layer (the analyses read one layer at
    a time), the Gram-matrix budget for CKA."""
    extra = config["analyses"]["cka"]["max_mem_mb"] if analysis == "cka" else 0
    return _round_mb(BASE_MEM_MB + 4 * activations_mb(config, model) + extra)


def extract_runtime_min(config: dict, model: str) -> int:
    """Analyses read each recorded epoch a few times; ~50 MB/s of decompressed float32 is a safe floor."""
    return int(math.ceil(RUNTIME_MARGIN * 4 * activations_mb(config, model) / 50 / 60 + RUNTIME_FIXED_MIN))


def dataset_mem_mb(config: dict) -> int:
    """prepare_dataset / make_noisy_labels: the raw arrays, their float32 copy and the normalised copy."""
    n_train, n_test = dataset_sizes(config["dataset"])
    return _round_mb(BASE_MEM_MB + 3 * (n_train + n_test) * INPUT_DIM[config["dataset"]["name"]] * 4 / 2**20)


def machine_memory_mb() -> int | None:
    """Physical memory of this machine in MB (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20)
    except (ValueError, OSError, AttributeError):
        return None
