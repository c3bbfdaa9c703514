"""Training of one run: Adam on the noisy labels, 5-way learning curves, activation recording, resumable.

A run's unfinished state lives in `<run>/work/` (checkpoint.pt and the partial activations.zarr);
its outputs appear only when training has finished, so a killed job leaves no half-written output
and its rerun continues from the last checkpoint, ending bit-identical on CPU to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from .artifacts import (CURVES_CF_ATTRS, ArtifactError, atomic_path, describe, read_dataset, read_labels,
                        write_netcdf)
from .config import EXECUTION_KEYS, INPUT_SHAPE, layer_widths, model_spec
from .augment import make_augment
from .joblog import LOG_FILE_ONLY, TERMINAL_ONLY, format_duration
from .models import build_model, resolve_device
from .recording import ActivationStore, probe_coords

SPLITS = ("train_all", "train_clean", "train_noisy_assigned", "train_noisy_original", "test")
# keys of the run spec that do not change what is computed (so a resume may differ in them)
_NOT_FINGERPRINTED = set(EXECUTION_KEYS["train"])


@dataclass
class RunPaths:
    activations: Path
    curves: Path
    model: Path
    work: Path

    @classmethod
    def in_dir(cls, run_dir: str | Path) -> "RunPaths":
        d = Path(run_dir)
        return cls.for_outputs(d / "activations.zarr", d / "curves.nc", d / "model.pt")

    @classmethod
    def for_outputs(cls, activations, curves, model) -> "RunPaths":
        """The unfinished state lives in work/ beside the activations store (a job's local copy under storage)."""
        activations = Path(activations)
        return cls(activations, Path(curves), Path(model), activations.parent / "work")


def fingerprint(spec: dict, dataset_attrs: dict, label_attrs: dict) -> dict:
    """What a run was trained from: input hashes and the resolved training config."""
    config = {k: v for k, v in sorted(spec.items()) if k not in _NOT_FINGERPRINTED}
    text = json.dumps(config, sort_keys=True)
    return {"dataset_sha256": dataset_attrs["content_sha256"], "labels_sha256": label_attrs["sha256"],
            "train_config": text, "train_config_sha256": hashlib.sha256(text.encode()).hexdigest()}


def _fingerprint_changes(old: dict, new: dict) -> list[str]:
    changed = [k.removesuffix("_sha256") for k in ("dataset_sha256", "labels_sha256") if old.get(k) != new[k]]
    a, b = json.loads(old.get("train_config", "{}")), json.loads(new["train_config"])
    return changed + [f"train.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def input_shape(data_attrs: dict, n_features: int) -> tuple[int, ...]:
    """A sample's (channels, positions...) for the networks, checked against the stored feature count."""
    shape = INPUT_SHAPE[str(data_attrs["name"])]
    if math.prod(shape) != n_features:
        raise ArtifactError(f"dataset {data_attrs['name']}: {n_features} features per sample, expected "
                            f"{' × '.join(map(str, shape))}")
    return shape


def eval_epochs(epochs: int, every: int) -> list[int]:
    return sorted(set(range(0, epochs + 1, every)) | {epochs})


class _Data:
    """Everything training touches, as tensors on the device (no DataLoader for in-memory data)."""

    def __init__(self, data: dict, labels: dict, device: torch.device):
        t = lambda a, dtype=None: torch.as_tensor(np.asarray(a), dtype=dtype).to(device)  # noqa: E731
        self.x_train = t(data["x_train"], torch.float32)
        self.x_test = t(data["x_test"], torch.float32)
        self.y_assigned = t(labels["y_noisy"], torch.int64)
        self.y_original = t(labels["y_original"], torch.int64)
        self.y_test = t(data["y_test"], torch.int64)
        noisy = t(labels["is_noisy"], torch.float32)
        self.masks = torch.stack([torch.ones_like(noisy), 1 - noisy, noisy])  # all, clean, noisy
        probe_train = np.concatenate([labels["probe_clean"], labels["probe_noisy"]])
        self.x_probe = torch.cat([self.x_train[t(probe_train, torch.int64)],
                                  self.x_test[t(labels["probe_test"], torch.int64)]])


@torch.inference_mode()
def _per_sample(model, x, targets, batch_size):
    """Cross-entropy and correctness of every sample against each target labelling: [T, N] each."""
    losses, correct = [], []
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        ys = [y[start:start + batch_size] for y in targets]
        losses.append(torch.stack([F.cross_entropy(logits, y, reduction="none") for y in ys]))
        pred = logits.argmax(1)
        correct.append(torch.stack([(pred == y).float() for y in ys]))
    return torch.cat(losses, 1), torch.cat(correct, 1)


@torch.inference_mode()
def evaluate(model, d: _Data, batch_size: int) -> torch.Tensor:
    """[split, (loss, accuracy)] over the full training and test sets, in SPLITS order (stays on device).

    Losses are plain cross-entropy, also for runs trained with label smoothing.
    """
    loss, corr = _per_sample(model, d.x_train, [d.y_assigned, d.y_original], batch_size)
    counts = d.masks.sum(1)
    mean = lambda v, m: (v @ d.masks[m]) / counts[m]  # noqa: E731
    train = torch.stack([
        torch.stack([mean(loss[0], 0), mean(corr[0], 0)]),  # train_all (assigned labels)
        torch.stack([mean(loss[0], 1), mean(corr[0], 1)]),  # train_clean
        torch.stack([mean(loss[0], 2), mean(corr[0], 2)]),  # train_noisy_assigned
        torch.stack([mean(loss[1], 2), mean(corr[1], 2)]),  # train_noisy_original
    ])
    tloss, tcorr = _per_sample(model, d.x_test, [d.y_test], batch_size)
    return torch.cat([train, torch.stack([tloss.mean(), tcorr.mean()])[None]])


@torch.inference_mode()
def record(model, x_probe: torch.Tensor, dtype: str) -> dict[str, np.ndarray]:
    """Probe activations (every recorded layer, ddscope.models), logits and output weights, as numpy `dtype`."""
    acts, logits = model.hidden_and_logits(x_probe)
    tdtype = getattr(torch, dtype)
    out = {f"act_{l}": a for l, a in enumerate(acts, 1)}
    out.update(logits=logits, w_out=model.out.weight)
    return {k: v.to(tdtype).cpu().numpy() for k, v in out.items()}


def make_optimizer(model, spec: dict, device: torch.device) -> torch.optim.Optimizer:
    # the fused kernel is ~1.4x faster per step on CPU and on CUDA, and deterministic on CPU;
    # capturable keeps its step count on the GPU so the step can live inside a CUDA graph
    return torch.optim.Adam(model.parameters(), lr=spec["lr"], betas=tuple(spec["betas"]),
                            weight_decay=spec["weight_decay"], fused=device.type in ("cpu", "cuda"),
                            capturable=device.type == "cuda")


def _step(model, opt, xb, yb, smoothing):
    loss = F.cross_entropy(model(xb), yb, label_smoothing=smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


class _GraphedStep:
    """One full-size training step (forward, backward, Adam) captured as a CUDA graph and replayed.

    A step of a small MLP is a few dozen short kernels; launching them from Python costs more than
    running them, so on CUDA the step is replayed from a graph. Batches are copied into static buffers.
    """

    def __init__(self, model, opt, smoothing):
        self.model, self.opt, self.smoothing = model, opt, smoothing
        self.graph = None

    def __call__(self, xb, yb):
        if self.graph is None:
            # eager warm-up steps on side streams are real steps of training, then capture the next one
            self.xs, self.ys = xb.clone(), yb.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                _step(self.model, self.opt, self.xs, self.ys, self.smoothing)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            self.opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                loss = F.cross_entropy(self.model(self.xs), self.ys, label_smoothing=self.smoothing)
                loss.backward()
                self.opt.step()
            return
        self.xs.copy_(xb)
        self.ys.copy_(yb)
        self.graph.replay()


def graphed_step(model, opt, smoothing: float, device: torch.device) -> _GraphedStep | None:
    """The CUDA-graph step runner on CUDA, None (eager steps) elsewhere."""
    return _GraphedStep(model, opt, smoothing) if device.type == "cuda" else None


def train_epoch(model, opt, x, y, batch_size: int, shuffle: torch.Generator, smoothing: float = 0.0,
                graphed: _GraphedStep | None = None, augment=None) -> None:
    """One pass over (x, y) in the order of one permutation drawn from `shuffle`; slices, no DataLoader.

    With `graphed` (CUDA), full batches are replayed from a CUDA graph; a last partial batch runs eagerly.
    With `augment` (ddscope.augment), each batch is augmented first. BatchNorm trains on batch statistics and
    is back in eval mode (running statistics) when the epoch ends.
    """
    model.train()
    perm = torch.randperm(len(x), generator=shuffle).to(x.device, non_blocking=True)
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        xb = x[idx] if augment is None else augment(x[idx])
        if graphed is not None and len(idx) == batch_size:
            graphed(xb, y[idx])
        else:
            _step(model, opt, xb, y[idx], smoothing)
    model.eval()


def _checkpoint(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _curves_dataset(epochs: list[int], values: np.ndarray, attrs: dict) -> xr.Dataset:
    """curves.nc: cross-entropy and accuracy [epoch, split] (named as in open_study, where `loss` is a run dim)."""
    ds = xr.Dataset(
        {"cross_entropy": (("epoch", "split"), values[:, :, 0],
                           {"description": "mean cross-entropy over the split (no label smoothing, also for runs "
                                           "trained with it)"}),
         "accuracy": (("epoch", "split"), values[:, :, 1])},
        coords={"epoch": np.asarray(epochs, dtype=np.int64), "split": list(SPLITS)}, attrs=attrs)
    return describe(ds, CURVES_CF_ATTRS)


PROGRESS_LINES = 20  # on the terminal, one line per 5 % of a run's epochs; the log file gets every evaluation


def progress_step(epoch: int, epochs: int) -> int:
    """Which 1/PROGRESS_LINES of the run `epoch` completes: a terminal line is due when it grows."""
    return epoch * PROGRESS_LINES // epochs


def train_run(dataset_path, labels_path, paths: RunPaths, spec: dict, log: logging.Logger | None = None,
              threads: int | None = None) -> None:
    """Train one run as `spec` says (model, loss, seed, optimiser, schedule) and write its three outputs."""
    log = log or logging.getLogger("ddscope")
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(spec["device"], gpus=spec.get("gpus", 0))
    data, data_attrs = read_dataset(dataset_path)
    labels, label_attrs = read_labels(labels_path, data_attrs)
    fp = fingerprint(spec, data_attrs, label_attrs)
    n_classes = int(data_attrs["n_classes"])
    d = _Data(data, labels, device)
    rec_epochs = list(spec["record_epochs"])
    ev_epochs = eval_epochs(spec["epochs"], spec["eval_every"])

    in_shape = input_shape(data_attrs, d.x_train.shape[1])
    torch.manual_seed(spec["seed"])  # fixes the initialisation
    model = build_model(spec, in_shape, n_classes).to(device).eval()  # eval: BatchNorm's running statistics
    opt = make_optimizer(model, spec, device)
    shuffle = torch.Generator().manual_seed(spec["seed"])  # fixes the batch order
    augment = make_augment(spec.get("augment", "none"), in_shape, spec["seed"])
    smoothing = spec["label_smoothing"] if spec["loss"] == "ls" else 0.0

    work_zarr, ckpt_path = paths.work / "activations.zarr", paths.work / "checkpoint.pt"
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # RNG states must stay on the CPU
        if state["fingerprint"] != fp:
            changed = _fingerprint_changes(state["fingerprint"], fp)
            raise ArtifactError(
                f"{ckpt_path}: checkpoint was made from different inputs ({', '.join(changed)} changed); "
                f"delete {paths.work} to start this run over")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        shuffle.set_state(state["shuffle_rng"])
        if augment is not None:
            augment.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        start, curves = state["epoch"], state["curves"]
        store = ActivationStore(work_zarr)
        store.truncate(state["n_recorded"])
        log.info(f"{spec['run']}: resuming from epoch {start} ({state['n_recorded']} recorded epochs kept)")
    else:
        paths.work.mkdir(parents=True, exist_ok=True)
        attrs = {"run": spec["run"], **fp, "record_dtype": spec["record_dtype"]}
        store = ActivationStore.create(work_zarr, rec_epochs, probe_coords(labels, data["y_test"]),
                                       layer_widths(spec), n_classes, spec["record_dtype"], attrs)
        start, curves = 0, {}
        curves[0] = evaluate(model, d, spec["eval_batch_size"]).cpu().numpy()
        store.write(0, record(model, d.x_probe, spec["record_dtype"]))
    rec_index = {e: i for i, e in enumerate(rec_epochs)}

    bs = spec["batch_size"]
    graphed = graphed_step(model, opt, smoothing, device)
    log.info(f"{spec['run']}: {len(d.x_train)} samples, batch {bs}, epochs {start + 1}..{spec['epochs']} on {device}, "
             f"{torch.get_num_threads()} thread(s)")
    t_last, e_last = time.perf_counter(), start
    shown = progress_step(start, spec["epochs"])
    for epoch in range(start + 1, spec["epochs"] + 1):
        train_epoch(model, opt, d.x_train, d.y_assigned, bs, shuffle, smoothing, graphed, augment)
        if epoch in rec_index:
            store.write_async(rec_index[epoch], record(model, d.x_probe, spec["record_dtype"]))
        if epoch in ev_epochs:
            curves[epoch] = evaluate(model, d, spec["eval_batch_size"]).cpu().numpy()
            now = time.perf_counter()
            per_epoch = (now - t_last) / (epoch - e_last)
            t_last, e_last = now, epoch
            c, eta = curves[epoch], format_duration(per_epoch * (spec["epochs"] - epoch))
            log.info(f"epoch {epoch}/{spec['epochs']} loss " + " ".join(f"{v:.3f}" for v in c[:, 0])
                     + " | acc " + " ".join(f"{v:.3f}" for v in c[:, 1])
                     + f" | {per_epoch:.2f} s/epoch, ETA {eta}", extra=LOG_FILE_ONLY)
            if progress_step(epoch, spec["epochs"]) > shown:
                shown = progress_step(epoch, spec["epochs"])
                test_error = 1 - c[SPLITS.index("test"), 1]
                log.info(f"[{spec['run']}] epoch {epoch}/{spec['epochs']}  test err {test_error:.3f}  "
                         f"{per_epoch:.2f} s/epoch  ETA {eta}", extra=TERMINAL_ONLY)
        if epoch % spec["checkpoint_every"] == 0 or epoch == spec["epochs"]:
            store.wait()  # n_complete must count only epochs that are on disk
            _checkpoint(ckpt_path, model=model.state_dict(), optimizer=opt.state_dict(),
                        shuffle_rng=shuffle.get_state(), torch_rng=torch.get_rng_state(), epoch=epoch,
                        augment_rng=augment.get_state() if augment is not None else None,
                        n_recorded=store.n_complete, curves=curves, fingerprint=fp)

    # outputs appear only now, each atomically
    attrs = {"run": spec["run"], **fp, "splits_loss": "cross-entropy (no label smoothing)"}
    epochs_done = sorted(curves)
    write_netcdf(_curves_dataset(epochs_done, np.stack([curves[e] for e in epochs_done]), attrs), paths.curves)
    with atomic_path(paths.model) as tmp:
        torch.save({"state_dict": model.state_dict(), "in_dim": d.x_train.shape[1], "in_shape": list(in_shape),
                    **model_spec(spec), "layer_widths": layer_widths(spec), "n_classes": n_classes, **fp}, tmp)
    store.wait()
    store.finish()
    if paths.activations.exists():
        shutil.rmtree(paths.activations)
    shutil.move(str(work_zarr), str(paths.activations))
    shutil.rmtree(paths.work)
    log.info(f"{spec['run']}: done")


def main(argv=None) -> None:
    """`python -m ddscope.train DATASET LABELS RUN_DIR SPEC_JSON`: one run outside Snakemake."""
    import argparse

    from .joblog import expected_errors, job_logger

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("dataset"), p.add_argument("labels"), p.add_argument("run_dir"), p.add_argument("spec")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    log = job_logger(Path(args.run_dir) / "train.log")
    with expected_errors(log):
        train_run(args.dataset, args.labels, RunPaths.in_dir(args.run_dir), json.loads(Path(args.spec).read_text()),
                  log, args.threads)


if __name__ == "__main__":
    main()
