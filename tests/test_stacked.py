"""Stacked training: runs stepped together as one batched model end bit-identical to the same runs trained alone.

Bit-identity depends on the BLAS build and the thread count, so it is tested here, on this machine's torch,
at the shapes and thread counts of the shipped configs, not assumed.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

from ddscope.analyses.activations import open_activations
from ddscope.config import (INPUT_SHAPE, condition_of, has_noisy_label_study, run_names, study_config, train_stacks,
                             validate_config)
from ddscope.models import MLP
from ddscope.stacked import StackedParams, stack_shape, stacked_train_epoch
from ddscope.train import Member, RunPaths, train_epoch, train_run, train_stack
from test_train import _interrupted_run, inputs, make_spec  # noqa: F401 (inputs is a fixture)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [REPO / "config.yaml", *sorted((REPO / "configs").glob("*.yaml"))]


@pytest.fixture(autouse=True)
def one_thread():
    """Jobs run with train.threads (1 by default); tests that set another count restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shipped_mlp_shapes():
    """(config, model, input features, hidden widths, batch size, threads) of every MLP a shipped config trains."""
    shapes = set()
    for path in CONFIGS:
        config = validate_config(study_config([] if path.name == "config.yaml" else [path]))
        if not has_noisy_label_study(config):
            continue
        features = int(np.prod(INPUT_SHAPE[config["dataset"]["name"]]))
        for name, entry in config["models"].items():
            if entry.get("arch", "mlp") == "mlp":
                shapes.add((features, tuple(entry["hidden"]), config["train"]["batch_size"],
                            config["train"]["threads"]))
    return sorted(shapes)


@pytest.mark.parametrize("features,hidden,batch,threads", shipped_mlp_shapes())
def test_stacked_epoch_is_bit_identical_to_solo_epochs(features, hidden, batch, threads):
    """Three members (one with label smoothing) over an epoch of 4 batches and a partial one, as in jobs."""
    torch.set_num_threads(threads)
    n = 4 * batch + batch // 3
    torch.manual_seed(0)
    x = torch.randn(n, features)
    ys = [torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(s)) for s in range(3)]
    smoothing = [0.0, 0.1, 0.0]

    def member(seed):
        torch.manual_seed(seed)
        model = MLP(features, list(hidden), 10)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3, fused=True), torch.Generator().manual_seed(seed)

    solo, stacked = [member(s) for s in range(3)], [member(s) for s in range(3)]
    params = StackedParams([m for m, _, _ in stacked])
    for _ in range(2):
        for (model, opt, gen), y, s in zip(solo, ys, smoothing):
            train_epoch(model, opt, x, y, batch, gen, s)
        stacked_train_epoch(params, [o for _, o, _ in stacked], x, ys, batch,
                            [g for _, _, g in stacked], smoothing)
    for (a, oa, _), (b, ob, _) in zip(solo, stacked):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            assert torch.equal(p, q), f"{name} differs after stacked training ({hidden}, {threads} thread(s))"
        sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
        assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


def test_shapes_that_differ_do_not_stack():
    base = make_spec()
    assert stack_shape(base) == stack_shape({**base, "seed": 3, "loss": "ls", "run": "x"})
    assert stack_shape(base) != stack_shape({**base, "hidden": [32, 32]})
    assert stack_shape({**base, "arch": "cnn"}) is None
    assert stack_shape({**base, "augment": "crop_flip"}) is None


def _members(inputs, root, specs, trained_dir=False):
    out = []
    for spec in specs:
        d = root / spec["run"]
        paths = (RunPaths(d / "trained/activations.zarr", d / "trained/curves.nc", d / "trained/model.pt", d / "work")
                 if trained_dir else RunPaths.in_dir(d))
        out.append(Member(spec, paths, inputs[1], __import__("logging").getLogger("test")))
    return out


def _assert_same_outputs(a: RunPaths, b: RunPaths):
    ca, cb = xr.open_dataset(a.curves), xr.open_dataset(b.curves)
    assert {k: v for k, v in ca.attrs.items() if k != "content_sha256"} == {k: v for k, v in cb.attrs.items() if k != "content_sha256"}
    for v in ca.data_vars:
        assert np.array_equal(ca[v].values, cb[v].values), v
    za, zb = open_activations(a.activations), open_activations(b.activations)
    for v in za.data_vars:
        assert np.array_equal(za[v].values, zb[v].values), v
    ma, mb = torch.load(a.model, weights_only=False), torch.load(b.model, weights_only=False)
    assert all(torch.equal(ma["state_dict"][k], mb["state_dict"][k]) for k in ma["state_dict"])


def _specs(epochs=8, **kw):
    return [make_spec(epochs=epochs, run=f"mlp3-sym30-{loss}-s{seed}", seed=seed, loss=loss, label_smoothing=0.1, **kw)
            for seed, loss in ((0, "ce"), (1, "ls"), (2, "ce"))]


@pytest.mark.parametrize("threads", [1, 2])
def test_stacked_runs_write_what_solo_runs_write(inputs, tmp_path, threads, caplog):
    """With 1 thread the members are stepped as one batched model; with 2 this CPU's batched matmuls round
    differently at these widths, the job notices and steps them one after another. Same bits either way."""
    specs = _specs()
    for spec in specs:
        train_run(inputs[0], inputs[1], RunPaths.in_dir(tmp_path / "solo" / spec["run"]), spec, threads=threads)
    members = _members(inputs, tmp_path / "stack", specs)
    assert train_stack(inputs[0], members, threads=threads) == []
    assert ("one after another" in caplog.text) == (threads > 1)
    for spec, m in zip(specs, members):
        assert not m.paths.work.exists()
        _assert_same_outputs(RunPaths.in_dir(tmp_path / "solo" / spec["run"]), m.paths)


def test_killed_stack_resumes_bit_identical(inputs, tmp_path, monkeypatch):
    """Killed mid-run (after a checkpoint), the stack resumes every member and ends as if never stopped."""
    specs = _specs(epochs=8, checkpoint_every=2)
    whole = _members(inputs, tmp_path / "whole", specs)
    train_stack(inputs[0], whole)
    import ddscope.train as train

    real, calls = train.evaluate, []

    def dying_evaluate(*a, **k):
        calls.append(1)
        if len(calls) == 3 * 5:  # during the 5th evaluation of the stack
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train_stack(inputs[0], _members(inputs, tmp_path / "killed", specs))
    monkeypatch.setattr(train, "evaluate", real)
    resumed = _members(inputs, tmp_path / "killed", specs)
    assert all((m.paths.work / "checkpoint.pt").exists() for m in resumed)
    train_stack(inputs[0], resumed)
    for a, b in zip(whole, resumed):
        _assert_same_outputs(a.paths, b.paths)


def test_members_at_other_epochs_resume_together(inputs, tmp_path, monkeypatch):
    """One member killed alone earlier (a solo job, say) joins a stack whose others start from scratch."""
    specs = _specs(epochs=8, checkpoint_every=2)
    _interrupted_run(inputs, RunPaths.in_dir(tmp_path / "mixed" / specs[1]["run"]), specs[1], monkeypatch)
    mixed = _members(inputs, tmp_path / "mixed", specs)
    train_stack(inputs[0], mixed)
    whole = _members(inputs, tmp_path / "whole", specs)
    train_stack(inputs[0], whole)
    for a, b in zip(whole, mixed):
        _assert_same_outputs(a.paths, b.paths)


def test_a_diverging_member_fails_alone(inputs, tmp_path, caplog):
    """A member whose loss becomes NaN is reported by name; the other members finish and are unchanged."""
    specs = _specs(epochs=6)
    specs[1] = {**specs[1], "lr": 1e30}
    members = _members(inputs, tmp_path / "stack", specs)
    failed = train_stack(inputs[0], members)
    assert [m.name for m in failed] == ["mlp3-sym30-ls-s1"]
    assert re.search("training loss is (nan|inf)", failed[0].failure)
    assert members[1].paths.work.exists() and not members[1].paths.curves.exists()
    assert "one after another" not in caplog.text  # the probe step of a diverging member is NaN in both
    for i in (0, 2):
        solo = RunPaths.in_dir(tmp_path / "solo" / specs[i]["run"])
        train_run(inputs[0], inputs[1], solo, specs[i])
        _assert_same_outputs(solo, members[i].paths)


def test_stack_killed_with_sigkill_resumes_bit_identical(inputs, tmp_path):
    """A real stacked training process (python -m ddscope.train with three runs) killed with SIGKILL part-way."""
    specs = _specs(epochs=30, checkpoint_every=5)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def cmd(root):
        args = []
        for spec in specs:
            (root / spec["run"]).mkdir(parents=True, exist_ok=True)
            (root / f"{spec['run']}.json").write_text(json.dumps(spec))
            args += [str(root / spec["run"]), str(root / f"{spec['run']}.json")]
        return [sys.executable, "-m", "ddscope.train", str(inputs[0]), str(inputs[1]), *args]

    subprocess.run(cmd(tmp_path / "whole"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(cmd(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / specs[-1]["run"] / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "epoch 12/30" in log.read_text():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be killed"
    assert all((tmp_path / "killed" / s["run"] / "work" / "checkpoint.pt").exists() for s in specs)
    subprocess.run(cmd(tmp_path / "killed"), check=True, env=env, capture_output=True)
    assert "resuming from epoch 10" in log.read_text()
    for spec in specs:
        _assert_same_outputs(RunPaths.in_dir(tmp_path / "whole" / spec["run"]),
                             RunPaths.in_dir(tmp_path / "killed" / spec["run"]))


def _default(**train):
    config = validate_config(study_config([]))
    config["train"].update(train)
    return config


def test_stacks_are_the_seeds_of_one_condition():
    config = _default()
    stacks = train_stacks(config)
    assert config["train"]["stack"] == 3 and len(stacks) == 6
    assert stacks[0] == ["mlp3-sym0-ce-s0", "mlp3-sym0-ce-s1", "mlp3-sym0-ce-s2"]
    assert sorted(r for s in stacks for r in s) == sorted(run_names(config))
    assert all(len({condition_of(r) for r in s}) == 1 for s in stacks)
    assert [len(s) for s in train_stacks(_default(stack=2))] == [2, 1] * 6
    assert all(len(s) == 1 for s in train_stacks(_default(stack=1)))
    augmented = _default(augment="crop_flip")
    assert all(len(s) == 1 for s in train_stacks(augmented))


def test_trained_runs_stack_only_with_each_other():
    """A new seed gets a stack of its own; a finished study keeps its stacks out of the new ones."""
    config = _default(seeds=[0, 1, 2, 3])
    done = {r for r in run_names(config) if not r.endswith("-s3")}
    stacks = train_stacks(config, done)
    new = [s for s in stacks if any(r.endswith("-s3") for r in s)]
    assert all(len(s) == 1 for s in new) and len(new) == 6
    assert all(set(s) <= done for s in stacks if s not in new)


def test_rule_train_moves_checked_outputs_into_place(inputs, tmp_path):
    """What a stack's job leaves in trained/ reaches the run's paths only if complete and trained from its spec;
    a member that failed in its stack is reported by name."""
    from ddscope.artifacts import FAILED, ArtifactError, TrainingFailed, promote_trained_run

    spec = _specs(epochs=2)[0]
    member = _members(inputs, tmp_path, [spec], trained_dir=True)[0]
    train_stack(inputs[0], [member])
    trained, final = member.paths.curves.parent, RunPaths.in_dir(tmp_path / "final")
    outputs = (final.activations, final.curves, final.model)
    with pytest.raises(ArtifactError, match="another config"):
        promote_trained_run(trained, *outputs, {**spec, "lr": 0.5})
    promote_trained_run(trained, *outputs, {**spec, "checkpoint_every": 7})  # execution keys may differ
    assert all(p.exists() for p in outputs) and not (trained / "curves.nc").exists()
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / FAILED).write_text("training loss is nan at epoch 3\n")
    with pytest.raises(TrainingFailed, match=r"mlp3-sym30-ce-s0: training loss is nan at epoch 3"):
        promote_trained_run(tmp_path / "failed", *outputs, spec)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU box)")


@cuda
def test_cuda_stack_replays_one_graph_and_stays_close_to_solo(inputs, tmp_path):
    """On CUDA a GPU study's stack (gpu_stack in the spec) is stepped as one graphed batched model; its runs are
    not known to be bit-identical to solo ones, so they are compared within float32 rounding after 8 epochs."""
    specs = [{**s, "device": "cuda", "gpu_stack": 3} for s in _specs(epochs=8)]
    solo = []
    for spec in specs:
        paths = RunPaths.in_dir(tmp_path / "solo" / spec["run"])
        train_run(inputs[0], inputs[1], paths, {k: v for k, v in spec.items() if k != "gpu_stack"})
        solo.append(paths)
    stacked = _members(inputs, tmp_path / "stack", specs)
    assert train_stack(inputs[0], stacked) == []
    for a, m in zip(solo, stacked):
        ca, cb = xr.open_dataset(a.curves), xr.open_dataset(m.paths.curves)
        np.testing.assert_allclose(ca.cross_entropy.values, cb.cross_entropy.values, rtol=1e-3, atol=1e-4)
