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
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from .artifacts import (CURVES_CF_ATTRS, FAILED, ArtifactError, TrainingFailed, atomic_path, describe, read_dataset, read_labels,
                        write_netcdf)
from .config import INPUT_SHAPE, layer_widths, model_spec, train_config_text
from .augment import make_augment
from .joblog import LOG_FILE_ONLY, TERMINAL_ONLY, format_duration
from .models import build_model, resolve_device
from .recording import ActivationStore, probe_coords
from .stacked import StackedParams, stack_shape, stacked_step, stacked_train_epoch, stacking_is_exact

SPLITS = ("train_all", "train_clean", "train_noisy_assigned", "train_noisy_original", "test")


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
    text = train_config_text(spec)
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

    def __init__(self, data: dict, labels: dict, device: torch.device, shared: dict | None = None):
        t = lambda a, dtype=None: torch.as_tensor(np.asarray(a), dtype=dtype).to(device)  # noqa: E731
        # the runs of one job share one copy of the inputs on the device
        shared = {} if shared is None else shared
        if "x_train" not in shared:
            shared.update(x_train=t(data["x_train"], torch.float32), x_test=t(data["x_test"], torch.float32))
        self.x_train, self.x_test = shared["x_train"], shared["x_test"]
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


def _step(model, opt, xb, yb, smoothing, zero_grad: bool = True):
    loss = F.cross_entropy(model(xb), yb, label_smoothing=smoothing)
    if zero_grad:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


class GraphedStep:
    """One full-size training step (forward, backward, Adam) captured as a CUDA graph and replayed.

    A step of a small MLP is a few dozen short kernels; launching them from Python costs more than running
    them, so on CUDA the step is replayed from a graph: a solo run's step, or a whole stack's (every member's
    batched forward and backward and every member's Adam, ddscope.stacked). Batches are copied into static
    buffers. `step(xb, yb, zero_grad)` is the eager step.
    """

    def __init__(self, step, opts):
        self.step, self.opts = step, opts
        self.graph = None

    def __call__(self, xb, yb):
        if self.graph is None:
            # an eager warm-up step on a side stream is a real step of training, then the next one is captured
            self.xs, self.ys = xb.clone(), yb.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step(self.xs, self.ys, True)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            for opt in self.opts:
                opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                self.step(self.xs, self.ys, False)
            return
        self.xs.copy_(xb)
        self.ys.copy_(yb)
        self.graph.replay()


def graphed_step(model, opt, smoothing: float, device: torch.device) -> GraphedStep | None:
    """The CUDA-graph step runner of a solo run on CUDA, None (eager steps) elsewhere."""
    if device.type != "cuda":
        return None
    return GraphedStep(lambda xb, yb, zero: _step(model, opt, xb, yb, smoothing, zero), [opt])


def train_epoch(model, opt, x, y, batch_size: int, shuffle: torch.Generator, smoothing: float = 0.0,
                graphed: GraphedStep | None = None, augment=None) -> None:
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


def _own(state_dict: dict) -> dict:
    """Tensors with storage of their own: a stacked member's parameters are views into its stack's tensors,
    and torch.save would write the whole stack with each."""
    return {k: v.clone() for k, v in state_dict.items()}


def _checkpoint(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _to_host(obj):
    """`obj` with each CUDA tensor replaced by a pinned host copy queued on the current stream (no sync)."""
    if isinstance(obj, torch.Tensor) and obj.is_cuda:
        host = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=True)
        return host.copy_(obj, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    return obj


class Checkpointer:
    """Writes a run's checkpoints. On CUDA the device-to-host copies are queued behind the epoch's kernels and a
    thread writes the file once they are done, so the device goes on training meanwhile; elsewhere in place."""

    def __init__(self, path: Path):
        self.path, self.thread, self.error = path, None, None

    def save(self, **state) -> None:
        self.wait()
        if not any(isinstance(t, torch.Tensor) and t.is_cuda for t in state["model"].values()):
            _checkpoint(self.path, **state)
            return
        host, done = _to_host(state), torch.cuda.Event()
        done.record()

        def write():
            try:
                done.synchronize()
                _checkpoint(self.path, **host)
            except BaseException as e:  # re-raised by wait(), in the training thread
                self.error = e

        self.thread = threading.Thread(target=write, name=f"checkpoint {self.path.parent}", daemon=True)
        self.thread.start()

    def wait(self) -> None:
        """Until the last checkpoint is on disk (re-raising its writer's error)."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


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


@dataclass
class Member:
    """One run of a training job: what it is (spec, paths, log) and, once opened, its whole training state."""
    spec: dict
    paths: RunPaths
    labels: str | Path
    log: logging.Logger

    def open(self, data: dict, data_attrs: dict, device: torch.device, shared: dict, alone: bool) -> "Member":
        """Build the run's model, optimiser and random streams as a solo run does; resume from work/ if there.

        `alone`: the job trains this run only, so the global RNG is the run's own (checkpointed as it goes);
        stacked members (MLPs, whose training draws nothing from it) keep the state their initialisation left.
        """
        spec, paths = self.spec, self.paths
        labels, label_attrs = read_labels(self.labels, data_attrs)
        self.fp = fingerprint(spec, data_attrs, label_attrs)
        self.n_classes = int(data_attrs["n_classes"])
        self.d = _Data(data, labels, device, shared)
        self.alone = alone
        self.rec_epochs = list(spec["record_epochs"])
        self.rec_index = {e: i for i, e in enumerate(self.rec_epochs)}
        self.ev_epochs = set(eval_epochs(spec["epochs"], spec["eval_every"]))
        self.in_shape = input_shape(data_attrs, self.d.x_train.shape[1])
        torch.manual_seed(spec["seed"])  # fixes the initialisation
        self.model = build_model(spec, self.in_shape, self.n_classes).to(device).eval()  # eval: BN running stats
        self.opt = make_optimizer(self.model, spec, device)
        self.shuffle = torch.Generator().manual_seed(spec["seed"])  # fixes the batch order
        self.augment = make_augment(spec.get("augment", "none"), self.in_shape, spec["seed"])
        self.smoothing = spec["label_smoothing"] if spec["loss"] == "ls" else 0.0
        self.work_zarr, self.ckpt_path = paths.work / "activations.zarr", paths.work / "checkpoint.pt"
        self.checkpoints = Checkpointer(self.ckpt_path)
        self.failure = None
        if self.ckpt_path.exists():
            state = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)  # RNG states stay on CPU
            if state["fingerprint"] != self.fp:
                changed = _fingerprint_changes(state["fingerprint"], self.fp)
                raise ArtifactError(
                    f"{self.ckpt_path}: checkpoint was made from different inputs ({', '.join(changed)} changed); "
                    f"delete {paths.work} to start this run over")
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.shuffle.set_state(state["shuffle_rng"])
            if self.augment is not None:
                self.augment.set_state(state["augment_rng"])
            self.torch_rng = state["torch_rng"]
            if alone:
                torch.set_rng_state(self.torch_rng)
            self.start, self.curves = state["epoch"], state["curves"]
            self.store = ActivationStore(self.work_zarr)
            self.store.truncate(state["n_recorded"])
            self.log.info(f"{spec['run']}: resuming from epoch {self.start} ({state['n_recorded']} recorded epochs kept)")
        else:
            paths.work.mkdir(parents=True, exist_ok=True)
            attrs = {"run": spec["run"], **self.fp, "record_dtype": spec["record_dtype"]}
            self.store = ActivationStore.create(self.work_zarr, self.rec_epochs, probe_coords(labels, data["y_test"]),
                                                layer_widths(spec), self.n_classes, spec["record_dtype"], attrs)
            self.torch_rng = torch.get_rng_state()
            self.start, self.curves = 0, {}
            self.curves[0] = evaluate(self.model, self.d, spec["eval_batch_size"]).cpu().numpy()
            self.store.write(0, record(self.model, self.d.x_probe, spec["record_dtype"]))
        self.shown = progress_step(self.start, spec["epochs"])
        return self

    @property
    def name(self) -> str:
        return self.spec["run"]

    def active(self, epoch: int) -> bool:
        return self.failure is None and self.start < epoch <= self.spec["epochs"]

    def after_epoch(self, epoch: int, evaluation: torch.Tensor | None, per_epoch: float) -> None:
        """Record, log, check and checkpoint after `epoch` (`evaluation` from evaluate() on an evaluation epoch)."""
        spec = self.spec
        if evaluation is not None:
            c = self.curves[epoch] = evaluation
            eta = format_duration(per_epoch * (spec["epochs"] - epoch))
            self.log.info(f"epoch {epoch}/{spec['epochs']} loss " + " ".join(f"{v:.3f}" for v in c[:, 0])
                          + " | acc " + " ".join(f"{v:.3f}" for v in c[:, 1])
                          + f" | {per_epoch:.2f} s/epoch, ETA {eta}", extra=LOG_FILE_ONLY)
            if not np.isfinite(c[0, 0]):
                self.failure = f"training loss is {c[0, 0]} at epoch {epoch}"
                self.log.error(f"[{self.name}] failed: {self.failure}; its last checkpoint stays in {self.paths.work}")
                return
            if progress_step(epoch, spec["epochs"]) > self.shown:
                self.shown = progress_step(epoch, spec["epochs"])
                test_error = 1 - c[SPLITS.index("test"), 1]
                self.log.info(f"[{self.name}] epoch {epoch}/{spec['epochs']}  test err {test_error:.3f}  "
                              f"{per_epoch:.2f} s/epoch  ETA {eta}", extra=TERMINAL_ONLY)
        if epoch % spec["checkpoint_every"] == 0 or epoch == spec["epochs"]:
            self.store.wait()  # n_complete must count only epochs that are on disk
            self.checkpoints.save(model=_own(self.model.state_dict()), optimizer=self.opt.state_dict(),
                        shuffle_rng=self.shuffle.get_state(), epoch=epoch,
                        torch_rng=torch.get_rng_state() if self.alone else self.torch_rng,
                        augment_rng=self.augment.get_state() if self.augment is not None else None,
                        n_recorded=self.store.n_complete, curves=self.curves, fingerprint=self.fp)

    def finish(self) -> None:
        """Write the three outputs, each atomically, and drop work/."""
        paths, spec = self.paths, self.spec
        self.checkpoints.wait()
        attrs = {"run": spec["run"], **self.fp, "splits_loss": "cross-entropy (no label smoothing)"}
        epochs_done = sorted(self.curves)
        write_netcdf(_curves_dataset(epochs_done, np.stack([self.curves[e] for e in epochs_done]), attrs),
                     paths.curves)
        with atomic_path(paths.model) as tmp:
            torch.save({"state_dict": _own(self.model.state_dict()), "in_dim": self.d.x_train.shape[1],
                        "in_shape": list(self.in_shape), **model_spec(spec), "layer_widths": layer_widths(spec),
                        "n_classes": self.n_classes, **self.fp}, tmp)
        self.store.wait()
        self.store.finish()
        if paths.activations.exists():
            shutil.rmtree(paths.activations)
        shutil.move(str(self.work_zarr), str(paths.activations))
        shutil.rmtree(paths.work)
        self.log.info(f"{self.name}: done")


def _train_epoch_of(members: list[Member], epoch: int, graphs: dict, exact: dict) -> None:
    """One epoch of the members still training at `epoch`: batched when there are several and a batched step is
    exact here (ddscope.stacked), else one after another. `graphs` and `exact` are the job's caches."""
    if len(members) == 1:
        m = members[0]
        if m.name not in graphs:
            graphs[m.name] = graphed_step(m.model, m.opt, m.smoothing, m.d.x_train.device)
        train_epoch(m.model, m.opt, m.d.x_train, m.d.y_assigned, m.spec["batch_size"], m.shuffle, m.smoothing,
                    graphs[m.name], m.augment)
        return
    key = tuple(m.name for m in members)
    device = members[0].d.x_train.device
    if key not in exact:
        bs, n = members[0].spec["batch_size"], len(members[0].d.x_train)
        same = stacking_is_exact([m.model for m in members], [m.opt for m in members], members[0].d.x_train.shape[1],
                                 sorted({min(bs, n), n % bs} - {0}), [m.smoothing for m in members])
        # a GPU study's runs have their stack in their fingerprint (gpu_stack); all others must not depend on it
        exact[key] = same or "gpu_stack" in members[0].spec
        if not exact[key]:
            members[0].log.warning(f"{', '.join(key)}: a batched step would not be bit-identical to solo steps "
                                   f"with {torch.get_num_threads()} thread(s) on this {device.type}; stepping "
                                   "them one after another")
        elif not same:
            members[0].log.info(f"{', '.join(key)}: stacked on {device.type}, not bit-identical to solo steps "
                                "(train.stack is part of these runs' fingerprint)")
    if not exact[key]:
        for m in members:
            _train_epoch_of([m], epoch, graphs, exact)
        return
    opts, smoothing = [m.opt for m in members], [m.smoothing for m in members]
    if key not in graphs:
        stacked = StackedParams([m.model for m in members])
        graph = (GraphedStep(lambda xb, yb, zero: stacked_step(stacked, opts, xb, yb, smoothing, zero), opts)
                 if device.type == "cuda" else None)
        graphs[key] = stacked, graph
    stacked, graph = graphs[key]
    stacked_train_epoch(stacked, opts, members[0].d.x_train, [m.d.y_assigned for m in members],
                        members[0].spec["batch_size"], [m.shuffle for m in members], smoothing, graph)


def train_stack(dataset_path, members: list[Member], threads: int | None = None) -> list[Member]:
    """Train the runs of one job together on one device and write each one's outputs; returns the failed ones.

    Members whose shapes allow it (ddscope.stacked.stack_shape) are stepped as one batched model; each keeps
    the initialisation, batch order, labels, optimiser state, checkpoints and outputs of a solo run, so its
    numbers do not depend on its stack (bit-identical on CPU). A member whose loss stops being finite is
    reported by name and left at its last checkpoint; the others go on.
    """
    if threads:
        torch.set_num_threads(threads)
    spec0 = members[0].spec
    shapes = {stack_shape(m.spec) for m in members}
    if len(members) > 1 and (len(shapes) != 1 or None in shapes):
        raise ValueError(f"runs {[m.name for m in members]} cannot be stacked: their shapes differ or have no "
                         "batched step")
    if spec0.get("tf32"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    device = resolve_device(spec0["device"], gpus=spec0.get("gpus", 0))
    data, data_attrs = read_dataset(dataset_path)
    shared = {}
    for m in members:
        m.open(data, data_attrs, device, shared, alone=len(members) == 1)
    epochs, first = spec0["epochs"], min(m.start for m in members)
    for m in members:
        m.log.info(f"{m.name}: {len(m.d.x_train)} samples, batch {spec0['batch_size']}, epochs {m.start + 1}.."
                   f"{epochs} on {device}, {torch.get_num_threads()} thread(s)"
                   + (f", stacked with {len(members) - 1} other run(s)" if len(members) > 1 else ""))
    graphs, exact, t_last = {}, {}, time.perf_counter()
    for epoch in range(first + 1, epochs + 1):
        active = [m for m in members if m.active(epoch)]
        if not active:
            break
        _train_epoch_of(active, epoch, graphs, exact)
        evals = {}
        for m in active:
            if epoch in m.rec_index:
                m.store.write_async(m.rec_index[epoch], record(m.model, m.d.x_probe, m.spec["record_dtype"]))
            if epoch in m.ev_epochs:
                evals[m.name] = evaluate(m.model, m.d, m.spec["eval_batch_size"])
        # one host transfer for every member's evaluation
        host = dict(zip(evals, torch.stack(list(evals.values())).cpu().numpy())) if evals else {}
        now = time.perf_counter()
        per_epoch, t_last = now - t_last, now
        for m in active:
            m.after_epoch(epoch, host.get(m.name), per_epoch)
    for m in members:
        if m.failure is None:
            m.finish()
        else:
            m.checkpoints.wait()
    return [m for m in members if m.failure is not None]


def train_run(dataset_path, labels_path, paths: RunPaths, spec: dict, log: logging.Logger | None = None,
              threads: int | None = None) -> None:
    """Train one run as `spec` says (model, loss, seed, optimiser, schedule) and write its three outputs."""
    failed = train_stack(dataset_path, [Member(spec, paths, labels_path, log or logging.getLogger("ddscope"))],
                         threads)
    if failed:
        raise TrainingFailed(f"{spec['run']}: {failed[0].failure}")


def main(argv=None) -> None:
    """`python -m ddscope.train DATASET LABELS RUN_DIR SPEC_JSON [RUN_DIR SPEC_JSON ...]`: runs outside Snakemake,
    several trained as one stack (each with its train.log in its RUN_DIR)."""
    import argparse

    from .joblog import expected_errors, job_logger

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("dataset"), p.add_argument("labels"), p.add_argument("runs", nargs="+", metavar="RUN_DIR SPEC_JSON")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if len(args.runs) % 2:
        p.error("give a SPEC_JSON after each RUN_DIR")
    pairs = list(zip(args.runs[::2], args.runs[1::2]))
    members = [Member(json.loads(Path(spec).read_text()), RunPaths.in_dir(run_dir), args.labels,
                      job_logger(Path(run_dir) / "train.log", name=f"ddscope.{i}")) for i, (run_dir, spec) in enumerate(pairs)]
    with expected_errors(members[0].log):
        failed = train_stack(args.dataset, members, args.threads)
        if failed:
            raise TrainingFailed("; ".join(f"{m.name}: {m.failure}" for m in failed))


if __name__ == "__main__":
    main()
