"""Training: output formats, recording correctness, kill-and-resume bit-identity, integrity checks."""

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from ddscope.artifacts import ArtifactError, write_h5
from ddscope.config import record_epochs
from ddscope.data import prepare_dataset
from ddscope.noise import make_noisy_labels
from ddscope.analyses.activations import open_activations
from ddscope.train import SPLITS, RunPaths, eval_epochs, train_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    arrays, attrs = prepare_dataset({"name": "mnist1d", "n_train": 1500, "n_test": 300, "seed": 1})
    write_h5(d / "dataset.h5", arrays, attrs)
    labels, lattrs = make_noisy_labels(arrays["y_train"], arrays["y_test"], "symmetric", 0.3, 10, 0,
                                       {"clean": 40, "noisy": 20, "test": 30}, attrs["content_sha256"])
    write_h5(d / "labels.h5", labels, lattrs)
    return d / "dataset.h5", d / "labels.h5", arrays, labels


def make_spec(epochs=8, **kw):
    spec = {"run": "mlp3-sym30-ce-s0", "model": "mlp3", "hidden": [32, 24], "loss": "ce", "seed": 0,
            "epochs": epochs, "batch_size": 64, "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0,
            "eval_every": 1, "eval_batch_size": 512, "checkpoint_every": 3, "device": "cpu",
            "label_smoothing": 0.0, "record_dtype": "float16",
            "record_epochs": record_epochs({"epochs": {"first": 4, "log_count": 3}}, epochs)}
    spec.update(kw)
    return spec


def test_outputs_follow_the_design(inputs, tmp_path):
    dataset, labels_path, arrays, labels = inputs
    spec = make_spec()
    paths = RunPaths.in_dir(tmp_path / "run")
    train_run(dataset, labels_path, paths, spec)
    assert not paths.work.exists()

    acts = open_activations(paths.activations)
    L = len(spec["hidden"])
    assert list(acts.epoch.values) == spec["record_epochs"]
    assert set(acts.data_vars) == {"act_1", "act_2", "logits", "w_out"}
    for l, w in enumerate(spec["hidden"], 1):
        assert acts[f"act_{l}"].dims == ("epoch", "sample", f"unit_{l}")
        assert acts[f"act_{l}"].shape == (len(spec["record_epochs"]), 90, w)
        assert acts[f"act_{l}"].dtype == np.float16
        assert float(acts[f"act_{l}"].min()) >= 0  # post-ReLU
    assert acts.logits.dims == ("epoch", "sample", "class") and acts.sizes["class"] == 10
    assert acts.w_out.dims == ("epoch", "class", f"unit_{L}")
    assert list(np.unique(acts.subset.values)) == ["clean", "noisy", "test"]
    assert acts.act_1.encoding["chunks"][0] == 1  # one epoch per chunk
    clean = acts.subset.values == "clean"
    assert np.array_equal(acts.sample.values[clean], labels["probe_clean"])
    noisy = acts.subset.values == "noisy"
    assert np.all(acts.y_assigned.values[noisy] != acts.y_original.values[noisy])

    curves = xr.open_dataset(paths.curves, engine="h5netcdf")
    assert list(curves.split.values) == list(SPLITS)
    assert list(curves.epoch.values) == eval_epochs(spec["epochs"], 1)
    assert set(curves.data_vars) == {"cross_entropy", "accuracy"}
    assert curves.attrs["labels_sha256"] and curves.attrs["dataset_sha256"]

    # the last recorded epoch is the final model: recorded logits equal a fresh forward pass (float16 precision)
    from ddscope.models import MLP
    state = torch.load(paths.model, weights_only=False)
    model = MLP(state["in_dim"], state["hidden"], state["n_classes"])
    model.load_state_dict(state["state_dict"])
    probe_x = np.concatenate([arrays["x_train"][labels["probe_clean"]], arrays["x_train"][labels["probe_noisy"]],
                              arrays["x_test"][labels["probe_test"]]])
    with torch.no_grad():
        hidden, logits = model.hidden_and_logits(torch.as_tensor(probe_x))
    np.testing.assert_allclose(acts.logits.values[-1], logits.numpy(), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(acts.act_2.values[-1], hidden[1].numpy(), rtol=1e-2, atol=1e-2)
    # training accuracy on the assigned labels equals the curve's, recomputed from the model
    pred = model(torch.as_tensor(arrays["x_train"])).argmax(1).numpy()
    acc = (pred == labels["y_noisy"]).mean()
    assert abs(float(curves.accuracy.sel(split="train_all")[-1]) - acc) < 1e-6


def _train_cmd(inputs, run_dir, spec_path):
    dataset, labels_path, *_ = inputs
    return [sys.executable, "-m", "ddscope.train", str(dataset), str(labels_path), str(run_dir), str(spec_path)]


ARCHS = {"mlp": ({}, 40), "cnn": ({"arch": "cnn", "width": 4}, 10), "resnet18": ({"arch": "resnet18", "width": 4}, 10),
         "vit": ({"arch": "vit", "width": 16, "depth": 2, "heads": 2, "patch": 4}, 10)}


@pytest.mark.parametrize("arch", ARCHS)
def test_killed_run_resumes_bit_identical(inputs, tmp_path, arch):
    """Also for BatchNorm (running statistics in the checkpoint) and attention: every architecture on CPU."""
    model, epochs = ARCHS[arch]
    spec = make_spec(epochs=epochs, checkpoint_every=5, **model,
                     record_epochs=record_epochs({"epochs": {"first": 12, "log_count": 6}}, epochs))
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    subprocess.run(_train_cmd(inputs, tmp_path / "a", spec_path), check=True, env=env, capture_output=True)

    # a real training process, killed with SIGKILL part-way (after epoch 7: checkpoint at 5, zarr ahead of it)
    proc = subprocess.Popen(_train_cmd(inputs, tmp_path / "b", spec_path), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "b" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and f"epoch 7/{epochs}" in log.read_text():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be killed"
    b = RunPaths.in_dir(tmp_path / "b")
    assert (b.work / "checkpoint.pt").exists() and not b.curves.exists() and not b.activations.exists()

    subprocess.run(_train_cmd(inputs, tmp_path / "b", spec_path), check=True, env=env, capture_output=True)
    assert "resuming from epoch" in log.read_text()

    a = RunPaths.in_dir(tmp_path / "a")
    ca, cb = xr.open_dataset(a.curves), xr.open_dataset(b.curves)
    assert np.array_equal(ca.cross_entropy.values, cb.cross_entropy.values) and np.array_equal(ca.accuracy.values, cb.accuracy.values)
    za, zb = open_activations(a.activations), open_activations(b.activations)
    for name in za.data_vars:
        assert np.array_equal(za[name].values, zb[name].values, equal_nan=True), name
    sa, sb = torch.load(a.model, weights_only=False), torch.load(b.model, weights_only=False)
    for k in sa["state_dict"]:
        assert torch.equal(sa["state_dict"][k], sb["state_dict"][k]), k


def _interrupted_run(inputs, paths, spec, monkeypatch, after_evals=5):
    """Train until the n-th evaluation, then die as a killed job would (checkpoint left in work/)."""
    import ddscope.train as train

    real, calls = train.evaluate, []

    def dying_evaluate(*a, **k):
        calls.append(1)
        if len(calls) == after_evals:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train_run(inputs[0], inputs[1], paths, spec)
    monkeypatch.setattr(train, "evaluate", real)
    assert (paths.work / "checkpoint.pt").exists()


def test_resume_against_other_inputs_refuses(inputs, tmp_path, monkeypatch):
    dataset, labels_path, arrays, labels = inputs
    spec = make_spec(epochs=8, checkpoint_every=2)
    paths = RunPaths.in_dir(tmp_path / "run")
    _interrupted_run(inputs, paths, spec, monkeypatch)
    with pytest.raises(ArtifactError, match=r"different inputs \(train\.lr changed\).*delete"):
        train_run(dataset, labels_path, paths, {**spec, "lr": 3e-3})
    # other labels (another noise seed) are refused too
    other, oattrs = make_noisy_labels(arrays["y_train"], arrays["y_test"], "symmetric", 0.3, 10, 1,
                                      {"clean": 40, "noisy": 20, "test": 30},
                                      __import__("h5py").File(dataset).attrs["content_sha256"])
    write_h5(tmp_path / "other.h5", other, oattrs)
    with pytest.raises(ArtifactError, match=r"labels changed"):
        train_run(dataset, tmp_path / "other.h5", paths, spec)
    # settings that do not change results (device, checkpoint cadence) may differ on resume
    train_run(dataset, labels_path, paths, {**spec, "checkpoint_every": 3})
    assert paths.curves.exists()


def test_corrupted_store_is_detected(inputs, tmp_path, monkeypatch):
    paths = RunPaths.in_dir(tmp_path / "run")
    _interrupted_run(inputs, paths, make_spec(epochs=8, checkpoint_every=2), monkeypatch)
    with pytest.raises(ArtifactError, match="incomplete"):
        open_activations(paths.work / "activations.zarr")


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU box)")


@cuda
def test_cuda_run_matches_cpu_and_resumes_identically(inputs, tmp_path, monkeypatch):
    """The GPU path (device tensors, CUDA-graph steps, a partial last batch run eagerly, capturable fused Adam).

    1500 samples in batches of 64 leave a last batch of 28, so eager and graphed steps interleave every epoch.
    """
    spec = make_spec(epochs=10, checkpoint_every=2, device="cuda")
    cpu, gpu, resumed = (RunPaths.in_dir(tmp_path / name) for name in ("cpu", "gpu", "resumed"))
    train_run(inputs[0], inputs[1], cpu, {**spec, "device": "cpu"})
    train_run(inputs[0], inputs[1], gpu, spec)
    c_cpu, c_gpu = xr.open_dataset(cpu.curves), xr.open_dataset(gpu.curves)
    # same init and batch order: the curves agree up to float rounding that grows over training
    np.testing.assert_allclose(c_gpu.cross_entropy.values[:3], c_cpu.cross_entropy.values[:3], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(c_gpu.accuracy.values, c_cpu.accuracy.values, atol=0.03)
    train_acc = c_gpu.accuracy.sel(split="train_all").values
    assert train_acc[-1] > train_acc[0] + 0.1  # it learns

    _interrupted_run(inputs, resumed, spec, monkeypatch, after_evals=6)
    train_run(inputs[0], inputs[1], resumed, spec)
    c_res = xr.open_dataset(resumed.curves)
    np.testing.assert_array_equal(c_res.cross_entropy.values, c_gpu.cross_entropy.values)
    za, zb = open_activations(gpu.activations), open_activations(resumed.activations)
    for name in za.data_vars:
        np.testing.assert_array_equal(za[name].values, zb[name].values, err_msg=name)


def test_terminal_gets_a_line_per_5_percent_the_log_every_epoch(inputs, tmp_path, capfd):
    """Parallel jobs share the terminal: there each run says where it is ~20 times, named; its log holds all."""
    from ddscope.joblog import job_logger

    log_file = tmp_path / "train.log"
    spec = make_spec(epochs=40, eval_every=1)
    train_run(inputs[0], inputs[1], RunPaths.in_dir(tmp_path / "run"), spec, job_logger(log_file), threads=1)
    terminal = capfd.readouterr().err.splitlines()
    progress = [line for line in terminal if "] epoch " in line]
    assert [int(line.split("epoch ")[1].split("/")[0]) for line in progress] == list(range(2, 41, 2))
    assert all(re.search(r"\[mlp3-sym30-ce-s0\] epoch \d+/40  test err 0\.\d{3}  [\d.]+ s/epoch  ETA \d+m\d\ds$",
                         line) for line in progress), progress
    assert len(terminal) == len(progress) + 2, "besides progress: the start and the done line"
    logged = log_file.read_text().splitlines()
    assert sum(" epoch " in line and "] epoch" not in line for line in logged) == 40
    assert not any("] epoch " in line for line in logged), "the log file has the full lines only"
