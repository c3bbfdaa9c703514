"""The `ddscope` command: status of a finished study and of one caught in every state (from crafted logs in
the format ddscope.train writes), export round trips (.nc, .zarr), one-line errors; in-process through
ddscope.cli.main, plus one call of the installed console script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from base64 import urlsafe_b64encode
from pathlib import Path

import pytest
import xarray as xr
import yaml
from test_study import CONFIG, RUNS, copy_tables, tiny_study_dir

import ddscope
from ddscope.cli import format_duration, main, training_progress
from ddscope.study import open_study

START = "{run}: 400 samples, batch 64, epochs 1..12 on cpu, 1 thread(s)"
EPOCH = ("epoch {e}/12 loss 2.320 2.321 2.318 2.312 2.299 | acc 0.080 0.082 0.075 0.158 0.090 "
         "| {rate:.2f} s/epoch, ETA {eta}")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    return tiny_study_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def tree(study_dir) -> xr.DataTree:
    return open_study(study_dir)


def training_log(run: str, last_epoch: int, start_s: int = 10 * 3600, every_s: int = 10) -> list[str]:
    """The lines ddscope.train logs up to `last_epoch`, one epoch every `every_s` seconds."""
    stamp = lambda s: f"{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"  # noqa: E731
    lines = [f"{stamp(start_s)} {START.format(run=run)}"]
    for e in range(1, last_epoch + 1):
        eta = format_duration(every_s * (12 - e))
        lines.append(f"{stamp(start_s + e * every_s)} {EPOCH.format(e=e, rate=every_s, eta=eta)}")
    return lines


def status(capsys, *args) -> tuple[int, list[str], str]:
    code = main(["status", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"ddscope {ddscope.__version__}\n"


def test_progress_and_eta_come_from_the_log_timestamps():
    log = "\n".join(training_log("mlp3-sym30-ce-s0", 4, start_s=23 * 3600 + 59 * 60 + 40)) + "\n"  # past midnight
    progress = training_progress(log, now=1000.0, written_at=995.0)
    assert (progress["epoch"], progress["epochs"], progress["rate"]) == (4, 12, 10.0)
    assert progress["eta_s"] == 8 * 10 - 5
    # a resumed job: only lines after the last (re)start count; an error as last line is the failure
    resumed = log + "00:10:00 resuming from epoch 4 (3 recorded epochs kept)\n00:10:01 ddscope: boom\n"
    assert training_progress(resumed, 0, 0) == {"error": "ddscope: boom"}


@pytest.mark.slow
def test_status_of_a_finished_study(study_dir, capsys):
    code, lines, err = status(capsys, study_dir)
    assert code == 0 and err == ""
    assert [line.split() for line in lines[:-1]] == [[run, "done"] for run in RUNS]
    assert lines[-1] == "4 runs: 4 done"


@pytest.mark.slow
def test_status_in_every_state(study_dir, tmp_path, capsys):
    workdir = tmp_path / "work"
    study = copy_tables(study_dir, workdir / "results" / "tiny")
    logs = study / "logs" / "train"
    logs.mkdir(parents=True)
    (study / "metrics" / "mlp5-sym30-ce-s1" / "probes.nc").unlink()  # partial
    running, failed, crashed, killed = (f"mlp5-sym30-ce-s{s}" for s in (2, 3, 4, 5))
    (logs / f"{running}.log").write_text("\n".join(training_log(running, 4)) + "\n")
    os.utime(logs / f"{running}.log")  # last written now
    error = "ddscope: results/tiny/labels/sym30.h5: y_noisy does not match its recorded sha256 (corrupted?)"
    (logs / f"{failed}.log").write_text("\n".join(training_log(failed, 2) + [f"10:00:25 {error}"]) + "\n")
    # a traceback goes to Snakemake, not to the train log: Snakemake's own log names the failed job
    (logs / f"{crashed}.log").write_text("\n".join(training_log(crashed, 3)) + "\n")
    (workdir / ".snakemake" / "log").mkdir(parents=True)
    (workdir / ".snakemake" / "log" / "2026-01-01T100000.snakemake.log").write_text(
        f"Error in rule train_stack_{crashed.replace('-', '_')}:\n    jobid: 7\n"
        f"    output: results/tiny/runs/{crashed}/trained\n"
        f"    log: results/tiny/logs/train/{crashed}.log (check log file(s) for error details)\n")
    # Snakemake killed while training: its incomplete marker stays, no lock
    (logs / f"{killed}.log").write_text("\n".join(training_log(killed, 5)) + "\n")
    marker = urlsafe_b64encode(f"results/tiny/runs/{killed}/trained".encode()).decode()  # its stack's job
    (workdir / ".snakemake" / "incomplete").mkdir()
    (workdir / ".snakemake" / "incomplete" / marker).write_text("{}")
    config = workdir / "tiny.yaml"
    only_mlp5 = {"models": {"mlp5": CONFIG["models"]["mlp5"]}, "train": {**CONFIG["train"], "seeds": list(range(7))}}
    config.write_text(yaml.safe_dump({**CONFIG, **only_mlp5}))  # mlp3's runs are listed from the study dir

    code, lines, err = status(capsys, study, "--config", config)
    assert code == 0 and err == "", err
    states = {line.split()[0]: line.split(maxsplit=2)[1:] for line in lines[:-1]}
    print("\n".join(lines))
    assert states["mlp3-sym30-ce-s0"] == ["done"]
    assert states["mlp5-sym30-ce-s1"] == ["partial", "trained; 6/7 metrics (missing: probes)"]
    state, detail = states[running]
    assert state == "running" and re.fullmatch(r"epoch 4/12, 10\.00 s/epoch, ETA 1m(1[5-9]|20)s", detail), detail
    assert states[failed] == ["failed", f"{error} (see {logs / f'{failed}.log'})"]
    assert states[crashed][0] == "failed"
    assert states[crashed][1].startswith("Snakemake reports the train job failed at epoch 3/12")
    assert states[killed][0] == "failed" and states[killed][1].startswith("killed at epoch 5/12")
    assert states["mlp5-sym30-ce-s6"] == ["missing"]
    assert lines[-1].startswith("9 runs: 3 done, 1 partial, 1 running, 3 failed, 1 missing; training ends in 1m")

    # --json: the same states, for scripts
    capsys.readouterr()  # the lines printed above
    code, out, err = status(capsys, study, "--config", config, "--json")
    report = json.loads("\n".join(out))
    assert code == 0 and err == "" and report["study"] == str(study)
    assert {r["run"]: r["state"] for r in report["runs"]} == {run: v[0] for run, v in states.items()}
    assert report["counts"] == {"done": 3, "partial": 1, "running": 1, "failed": 3, "missing": 1}
    assert 75 <= report["eta_s"] <= 80 and report["runs"][0].keys() == {"run", "state", "detail", "eta_s"}
    # --watch repeats while a run trains: here its log is stale, so one sweep after it stops
    (logs / f"{running}.log").write_text("\n".join(training_log(running, 12)) + f"\n10:02:01 {running}: done\n")
    code, out, err = status(capsys, study, "--watch", "0.01", "--json")
    assert code == 0 and err == "" and json.loads("\n".join(out))["counts"].get("running") is None


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_export_reads_back_as_the_same_tree(study_dir, tree, tmp_path, capsys, suffix):
    out = tmp_path / f"study{suffix}"
    assert main(["export", str(study_dir), str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither format may warn on the way back
        back = xr.open_datatree(out).load()
    assert back.attrs == tree.attrs
    assert sorted(back.children) == sorted(tree.children)
    for node in tree.children:
        xr.testing.assert_identical(back[node].to_dataset(), tree[node].to_dataset())


def one_line_error(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("ddscope: error: "), err
    return code, err.strip()


def test_errors_are_one_line(tmp_path, capsys):
    missing, empty = tmp_path / "nope", tmp_path / "empty"
    empty.mkdir()
    assert one_line_error(capsys, ["status", str(missing)]) == (2, f"ddscope: error: {missing}: no such directory")
    code, line = one_line_error(capsys, ["status", str(empty)])
    assert code == 2 and "not a study directory" in line
    code, line = one_line_error(capsys, ["export", str(empty), str(tmp_path / "out.nc")])
    assert code == 2 and "not a study" in line and not (tmp_path / "out.nc").exists()
    code, line = one_line_error(capsys, ["export", str(missing), str(tmp_path / "out.nc")])
    assert code == 2 and "no such directory" in line
    code, line = one_line_error(capsys, ["export", str(empty), str(tmp_path / "out.csv")])
    assert code == 2 and "must end in .nc or .zarr" in line
    config = tmp_path / "other.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "study": "other"}))
    code, line = one_line_error(capsys, ["status", str(empty), "--config", str(config)])
    assert code == 2 and "config of study 'other'" in line


@pytest.mark.slow
def test_the_installed_command(study_dir):
    command = shutil.which("ddscope") or shutil.which("ddscope", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.skip("no `ddscope` on PATH (pip install -e . registers the console script)")
    result = subprocess.run([command, "status", str(study_dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "4 runs: 4 done", result.stderr
    result = subprocess.run([command, "status", str(study_dir / "nope")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr == f"ddscope: error: {study_dir / 'nope'}: no such directory\n"
