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

from .config import dataset_sizes, record_epochs

INPUT_DIM = {"mnist1d": 40, "cifar10": 3 * 32 * 32}
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


def _round_mb(mb: float) -> int:
    return int(math.ceil(mb / 256) * 256)


def train_mem_mb(config: dict, model: str) -> int:
    """Memory of one training job: the dataset (numpy copy and tensor), weights with Adam state,
    one evaluation batch through every layer, and the recording of one epoch, plus the base."""
    d, t = config["dataset"], config["train"]
    n_train, n_test = dataset_sizes(d)
    hidden = config["models"][model]["hidden"]
    in_dim = INPUT_DIM[d["name"]]
    data = 2 * (n_train + n_test) * in_dim * 4
    weights = 4 * n_parameters(in_dim, hidden) * 4  # weights, gradients, Adam's two moments
    n_probes = sum(config["probes"].values())
    activations = min(t["eval_batch_size"], n_train) * (in_dim + sum(hidden) + N_CLASSES) * 4 * 3
    recording = 4 * n_probes * (sum(hidden) + N_CLASSES) * 4  # a few epochs queued for the writer
    return _round_mb(BASE_MEM_MB + 1.5 * (data + weights + activations + recording) / 2**20)


def train_runtime_min(config: dict, model: str) -> int:
    """Wall-time limit of one training job (minutes): FLOPs of training and evaluation at the assumed
    throughput of the job's device, plus a per-step overhead, times a margin."""
    d, t = config["dataset"], config["train"]
    n_train, n_test = dataset_sizes(d)
    params = n_parameters(INPUT_DIM[d["name"]], config["models"][model]["hidden"])
    n_evals = t["epochs"] // t["eval_every"] + 1
    flops = 6 * n_train * params * t["epochs"] + 2 * (n_train + n_test) * params * n_evals
    steps = math.ceil(n_train / t["batch_size"]) * t["epochs"]
    if t["gpus"] > 0:
        seconds = flops / GPU_FLOPS + steps * STEP_OVERHEAD_S["gpu"]
    else:
        seconds = flops / (CPU_FLOPS_PER_THREAD * t["threads"]) + steps * STEP_OVERHEAD_S["cpu"]
    return int(math.ceil(RUNTIME_MARGIN * seconds / 60 + RUNTIME_FIXED_MIN))


def activations_mb(config: dict, model: str) -> float:
    """Size of one run's recorded activations of its widest layer over all recorded epochs, as float32."""
    n_epochs = len(record_epochs(config["record"], config["train"]["epochs"]))
    n_probes = sum(config["probes"].values())
    return n_epochs * n_probes * max(config["models"][model]["hidden"]) * 4 / 2**20


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
