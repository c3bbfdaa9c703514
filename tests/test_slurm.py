"""The tiny study through a real single-node Slurm (tests/slurm_cluster.py): same values as a local run, and a
training job cancelled with scancel resumes from its checkpoint to a bit-identical result.

Skipped where Slurm cannot be stood up (not root, slurm-wlm/munge not installed), with the reason.
The cluster has no accounting database, so the flags of SLURM_FLAGS are needed (see the README).
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
from conftest import REPO, SNAKEFILE, run_snakemake, scheduled_jobs
from slurm_cluster import SlurmCluster, skip_unless_available
from tiny_study import RUN, TINY, assert_same_dataset, run_local, write_config

from ddscope import resources as sizing
from ddscope.analyses.registry import ANALYSES
from ddscope.config import study_config, validate_config

pytestmark = pytest.mark.slow

# What a cluster without accounting needs: sacct fails there, so the plugin's default status polling (sacct) never
# sees a job finish; squeue works (MinJobAge keeps finished jobs listed for 300 s). `--slurm-no-account` is what the
# README gives for such a cluster, but plugin 2.8.0 declares it and never reads it: it still guesses an account
# with sacct, fails ("sacct: invalid option -- '1'") and goes on without one, which is harmless.
# The rest is speed: the plugin checks first 40 s after a submission (default), then each time 10 s later than
# the last while no job has finished. A tiny-study job ends 5-7.5 s after its sbatch here (up to 3 s pending,
# 4-4.5 s running), so a first check after 8 s catches nearly all (2 s cost ~14 s a wave: one check too early,
# the next 12 s later; 6 s missed some by a few ms and waited 22 s). Successful jobs' Slurm logs are kept so that
# the test can count them.
SLURM_FLAGS = [
    "--profile", REPO / "profiles" / "slurm",
    "--jobs", "4",
    "--slurm-status-command", "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "8",
    "--slurm-keep-successful-logs",
]
SLURM_TIMEOUT = 420  # seconds for one snakemake run through the cluster (measured: ~100 s for the tiny study)
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    skip_unless_available()
    t0 = time.monotonic()
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        print(f"\nslurm: cluster {cluster.name} up in {time.monotonic() - t0:.1f} s ({cluster.root})")
        yield cluster


@pytest.fixture(autouse=True)
def _timed(request):
    t0 = time.monotonic()
    yield
    print(f"\n{request.node.name}: {time.monotonic() - t0:.1f} s")


def _run_id(output: str) -> str:
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, "no 'SLURM run ID' in snakemake's output: did it use the slurm executor?\n" + output[-3000:]
    return match.group(1)


def _open_zarr(path: Path) -> xr.Dataset:
    """xr.open_zarr(path) as a user would call it; it must not warn (consolidated metadata, nothing extra)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = xr.open_zarr(path).load()
    assert not caught, f"xr.open_zarr({path}) warned: " + "; ".join(str(w.message) for w in caught)
    return ds


def _snakemake_cmd(workdir: Path, configfile: Path, *args) -> list[str]:
    """The command run_snakemake runs (for a run in the background)."""
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), "--cores", "2",
            *map(str, args), "--configfile", str(configfile)]


def test_tiny_study_through_slurm(slurm, tmp_path):
    (tmp_path / "local").mkdir()
    t0 = time.monotonic()
    local = run_local(tmp_path / "local")
    print(f"\nlocal run of the tiny study: {time.monotonic() - t0:.1f} s")

    work = tmp_path / "slurm"
    work.mkdir()
    config = write_config(work)
    t0 = time.monotonic()
    result = run_snakemake(work, *SLURM_FLAGS, configfile=config, timeout=SLURM_TIMEOUT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:] + "\n" + slurm.log_tails()
    print(f"\nslurm run of the tiny study: {time.monotonic() - t0:.1f} s")

    # through Slurm: each stack's training job, and one job per run for its analyses (group `analyses`: its rule
    # train and its seven extract jobs, one after another); data, plots, summary, findings on this host
    scheduled = scheduled_jobs(output)
    stacks = {rule for rule in scheduled if rule.startswith("train_stack_")}
    assert stacks and scheduled["train"] == 1 and "summarize" in scheduled, output[-3000:]
    jobs = [j for j in slurm.jobs() if j["name"] == _run_id(output)]
    assert {j["state"] for j in jobs} == {"COMPLETED"}, jobs
    trained = {re.match(r"rule_(train_stack_\w+?)(_wildcards_.*)?$", j["comment"]).group(1)
               for j in jobs if j["comment"].startswith("rule_train_stack_")}
    groups = [j for j in jobs if not j["comment"].startswith("rule_train_stack_")]
    assert trained == stacks and len(groups) == 1 and len(jobs) == len(stacks) + 1, jobs
    # its jobs run one after another: the group asks for its largest member, not for eight jobs side by side
    config_ = validate_config(study_config([config]))
    members = [sizing.extract_mem_mb(config_, "mlp3", a) for a in ANALYSES] + [1000]
    assert groups[0]["cpus"] == 1 and groups[0]["mem_mb"] == max(members) < sum(members), groups
    slurm_logs = work / ".snakemake" / "slurm_logs"
    logged = {d.name for d in slurm_logs.iterdir() if any(d.rglob("*.log"))}
    assert {f"rule_{s}" for s in stacks} <= logged and any(d.startswith("group_") for d in logged), logged
    allocated = set(re.findall(r"(?:sched: Allocate|Started) JobId=(\d+)", slurm.logs["slurmctld"].read_text()))
    assert {j["id"] for j in jobs} <= allocated

    # the same values as the local run, artifact by artifact
    remote = work / "results" / TINY["study"]
    run_dir = f"runs/{RUN}"
    assert_same_dataset(xr.load_dataset(remote / run_dir / "curves.nc"),
                        xr.load_dataset(local / run_dir / "curves.nc"), "curves.nc")
    assert_same_dataset(_open_zarr(remote / run_dir / "activations.zarr"),
                        _open_zarr(local / run_dir / "activations.zarr"), "activations.zarr")
    metrics = sorted(p.relative_to(local) for p in (local / "metrics").rglob("*.nc"))
    assert metrics and metrics == sorted(p.relative_to(remote) for p in (remote / "metrics").rglob("*.nc"))
    for path in metrics:
        assert_same_dataset(xr.load_dataset(remote / path), xr.load_dataset(local / path), str(path))
    pd.testing.assert_frame_equal(pd.read_csv(remote / "tables" / "runs.csv"),
                                  pd.read_csv(local / "tables" / "runs.csv"), check_exact=True)

    # and nothing left to do
    dry = run_snakemake(work, *SLURM_FLAGS, "-n", configfile=config, timeout=120)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert scheduled_jobs(dry.stdout + dry.stderr) == {}, dry.stdout[-3000:]


# long enough to be cancelled mid-way: ~15 s of training on this machine (300 epochs took 2 s)
LONG = copy.deepcopy(TINY)
LONG["train"].update(epochs=3000, checkpoint_every=5)
KILL_AFTER_EPOCH = 300  # cancel once a checkpoint exists and the log is past this epoch
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) ")


def _last_epoch(log: Path) -> int:
    if not log.exists():
        return 0
    epochs = [int(m.group(1)) for m in EPOCH_LINE.finditer(log.read_text(errors="replace"))]
    return epochs[-1] if epochs else 0


def test_cancelled_training_resumes_through_slurm(slurm, tmp_path):
    target = f"results/{LONG['study']}/runs/{RUN}/curves.nc"  # the train job and the two it needs
    local = tmp_path / "local"
    local.mkdir()
    # the uninterrupted reference runs locally meanwhile (one core; the Slurm jobs here run one at a time)
    local_out = open(tmp_path / "local-run.out", "w")
    reference = subprocess.Popen(_snakemake_cmd(local, write_config(local, LONG), target), cwd=local,
                                 stdout=local_out, stderr=subprocess.STDOUT, text=True)
    try:
        _cancel_and_resume(slurm, tmp_path, target)
        local_status = reference.wait(timeout=300)
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait(timeout=30)
        local_out.close()
    assert local_status == 0, (tmp_path / "local-run.out").read_text()[-5000:]

    results = tmp_path / "slurm" / "results" / LONG["study"]
    for name, load in (("curves.nc", xr.load_dataset), ("activations.zarr", _open_zarr)):
        assert_same_dataset(load(results / "runs" / RUN / name),
                            load(local / "results" / LONG["study"] / "runs" / RUN / name), name)


def _cancel_and_resume(slurm, tmp_path: Path, target: str) -> None:
    """Run `target` through Slurm, scancel its training job past a checkpoint, rerun: it resumes and finishes."""
    work = tmp_path / "slurm"
    work.mkdir()
    config = write_config(work, LONG)
    results = work / "results" / LONG["study"]
    log = results / "logs" / "train" / f"{RUN}.log"
    checkpoint = results / "runs" / RUN / "work" / "checkpoint.pt"
    out = open(tmp_path / "first-run.out", "w")
    first = subprocess.Popen(_snakemake_cmd(work, config, *SLURM_FLAGS, target), cwd=work, stdout=out,
                             stderr=subprocess.STDOUT, text=True)
    try:
        t0 = time.monotonic()
        deadline = t0 + 240
        while not (checkpoint.exists() and _last_epoch(log) >= KILL_AFTER_EPOCH):
            assert first.poll() is None, "snakemake ended before training got far:\n" + \
                (tmp_path / "first-run.out").read_text()[-5000:]
            assert time.monotonic() < deadline, f"training did not reach epoch {KILL_AFTER_EPOCH} in 240 s\n" + \
                (tmp_path / "first-run.out").read_text()[-5000:] + "\n" + slurm.log_tails()
            time.sleep(0.2)
        train = [j for j in slurm.jobs() if j["comment"].startswith("rule_train") and j["state"] in ACTIVE]
        assert len(train) == 1, slurm.jobs()
        killed_at = _last_epoch(log)
        slurm.run("scancel", train[0]["id"])
        print(f"\ncancelled Slurm job {train[0]['id']} at epoch {killed_at}/{LONG['train']['epochs']} "
              f"({time.monotonic() - t0:.1f} s after submitting)")
        returncode = first.wait(timeout=180)
        print(f"first run ended with status {returncode}, {time.monotonic() - t0:.1f} s after submitting")
    finally:
        if first.poll() is None:
            first.kill()  # only on a failed assertion above: the test fails either way
            first.wait(timeout=30)
        out.close()
    first_output = (tmp_path / "first-run.out").read_text()
    assert returncode != 0, first_output[-5000:]
    assert train[0]["id"] in first_output, first_output[-5000:]  # snakemake reported the cancelled job
    assert checkpoint.exists(), "the checkpoint did not survive the cancelled job"
    assert not (results / "runs" / RUN / "curves.nc").exists()

    t0 = time.monotonic()
    rerun = run_snakemake(work, *SLURM_FLAGS, target, configfile=config, timeout=SLURM_TIMEOUT)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-6000:] + "\n" + slurm.log_tails()
    print(f"rerun through Slurm: {time.monotonic() - t0:.1f} s")
    assert scheduled_jobs(rerun.stdout + rerun.stderr) == {f"train_stack_{RUN.replace('-', '_')}": 1, "train": 1}
    text = log.read_text()
    resumed = re.search(r"resuming from epoch (\d+)", text)
    assert resumed, text[-3000:]
    start = int(resumed.group(1))
    # from the last checkpoint of the cancelled job, which was past KILL_AFTER_EPOCH
    assert KILL_AFTER_EPOCH - LONG["train"]["checkpoint_every"] <= start < LONG["train"]["epochs"], text[-3000:]
    after = [int(m.group(1)) for m in EPOCH_LINE.finditer(text[resumed.end():])]
    assert after[0] == start + 1 and after[-1] == LONG["train"]["epochs"], (after[:3], after[-3:])
