"""`ddscope status <study>`: where each run stands (done, partial, running with ETA, failed, missing);
`ddscope export <study> <out.nc|out.zarr>`: the study's joined DataTree in one file.

`status --json` prints the same as one JSON object; `status --watch [SECONDS]` repeats it while the study runs.

Status reads only file names, the training logs and what Snakemake leaves in .snakemake/ (its log of the last
run, the markers of incomplete outputs, its locks), never the artifacts, so it answers in a moment even for a
study that is still running (and loads nothing that training is writing). Snakemake's supported report of job
state, `snakemake --summary`, builds the study's whole DAG from its config (seconds to minutes, and only with
the same --configfile), and a logger plugin sees only runs started with it. Expected mistakes are one line,
`ddscope: error: ...`, with exit status 2 (usage: a missing or non-study directory) or 1 (a broken artifact).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from base64 import urlsafe_b64encode
from dataclasses import asdict, dataclass
from pathlib import Path

from ddscope.analyses.registry import ANALYSES
from ddscope.joblog import format_duration

# lines of ddscope.train's log (job_logger: "%H:%M:%S message")
_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d) (.*)$")
_EPOCH = re.compile(r"^epoch (\d+)/(\d+) .*?(?:\| ([\d.]+) s/epoch)?")
_START = re.compile(r"^(\S+: \d+ samples, batch|(\S+: )?resuming from epoch)")  # a (re)start: earlier lines are stale
_ERROR = re.compile(r"^(ddscope: |Traceback|\w*(Error|Exception)\b|Killed)")
_RUN_NAME = re.compile(r"[a-z][a-z0-9_]*-[a-z]+[0-9.]+-[a-z]+-s[0-9]+")
STALLED_AFTER_S = 600  # no log line for this long (and 10 epochs' time): say the job may have died


class CliError(Exception):
    """An expected mistake: printed as `ddscope: error: <message>`, exit status `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


@dataclass
class RunStatus:
    run: str
    state: str  # done | partial | running | failed | missing
    detail: str = ""
    eta_s: float | None = None


def training_progress(log_text: str, now: float, written_at: float) -> dict:
    """What the last (re)start of a training job has logged: epoch, epochs, rate (s/epoch), ETA, or its error.

    The rate comes from the log's timestamps (first to last epoch line of this start, which averages over
    the evaluation interval and checkpoints) when they span >= 10 s, else from the rate the last line states.
    The ETA counts the time since the log was last written (`now - written_at`). Timestamps have no date:
    a step back in time is a midnight passed.
    """
    lines = [m.groups() for line in log_text.splitlines() if (m := _LINE.match(line.strip()))]
    starts = [i for i, (*_, msg) in enumerate(lines) if _START.match(msg)]
    lines = lines[starts[-1]:] if starts else lines
    out: dict = {}
    if lines and _ERROR.match(lines[-1][3]):
        out["error"] = lines[-1][3]
    if lines and lines[-1][3].endswith(": done"):
        out["done"] = True
    epochs, clock, previous = [], 0.0, None
    for h, m, s, msg in lines:
        t = int(h) * 3600 + int(m) * 60 + int(s)
        clock += 0 if previous is None else (t - previous) % 86400
        previous = t
        if match := _EPOCH.match(msg):
            epochs.append((clock, int(match[1]), int(match[2]), float(match[3]) if match[3] else None))
    if not epochs:
        return out
    (t0, e0, _, _), (t1, e1, total, stated) = epochs[0], epochs[-1]
    rate = (t1 - t0) / (e1 - e0) if e1 > e0 and t1 - t0 >= 10 else stated
    out.update(epoch=e1, epochs=total, rate=rate, since_s=max(now - written_at, 0.0))
    if rate is not None:
        out["eta_s"] = max(rate * (total - e1) - out["since_s"], 0.0)
    return out


def snakemake_failures(workdir: Path) -> set[str]:
    """Runs whose training Snakemake reported failed in its newest log (.snakemake/log/*.snakemake.log):
    a crash with a traceback leaves the train log itself ending on an ordinary epoch line."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return set()
    failed, in_train_error = set(), False
    for line in logs[-1].read_text(errors="replace").splitlines():
        if line.startswith("Error in rule "):
            # a stack's training job (every run it trains), or a run's rule train (a run that diverged)
            in_train_error = line.startswith(("Error in rule train:", "Error in rule train_stack_"))
        elif in_train_error and line.strip().startswith("log:"):
            failed |= set(re.findall(r"logs/train(?:_outputs)?/([^\s,/]+)\.log", line))
            in_train_error = False
    return failed


def snakemake_incomplete(workdir: Path, study: Path, run: str) -> bool:
    """Snakemake marked the run's curves.nc incomplete and no Snakemake holds the directory: the job was
    killed with its Snakemake (a job still running has the marker too, but then a lock exists)."""
    marks, locks = workdir / ".snakemake" / "incomplete", workdir / ".snakemake" / "locks"
    if not marks.is_dir() or (locks.is_dir() and any(locks.iterdir())):
        return False
    for output in ("trained", "curves.nc"):  # its stack's job, or its rule train
        key = urlsafe_b64encode((study / "runs" / run / output).relative_to(workdir).as_posix().encode()).decode()
        # Snakemake's file name for the key: base64, in folders "@<254 chars>" when longer than a file name may be
        parts = [key[i:i + 254] for i in range(0, len(key), 254)]
        if marks.joinpath(*(["@" + p for p in parts[:-1]] + parts[-1:])).exists():
            return True
    return False


def study_workdir(study: Path) -> Path | None:
    """The directory Snakemake ran in (holding .snakemake/) for results/<study>, if the layout is the usual one."""
    workdir = study.parent.parent
    return workdir if study.parent.name == "results" and (workdir / ".snakemake").is_dir() else None


def listed_runs(study: Path) -> set[str]:
    """Runs with anything on disk: a run directory, a metrics directory or a training log."""
    names = {p.name for sub in ("runs", "metrics") if (study / sub).is_dir() for p in (study / sub).iterdir()}
    names |= {p.stem for p in (study / "logs" / "train").glob("*.log")}
    return {n for n in names if _RUN_NAME.fullmatch(n)}


def run_status(study: Path, run: str, workdir: Path | None, failed_by_snakemake: set[str], now: float) -> RunStatus:
    """done: every metric file; partial: trained, some metrics missing; running: training logs epochs;
    failed: the training log ends on an error, Snakemake reported the job failed, or it was killed;
    missing: nothing yet."""
    metrics = [a for a in ANALYSES if (study / "metrics" / run / f"{a}.nc").is_file()]
    if len(metrics) == len(ANALYSES):
        return RunStatus(run, "done")
    if (study / "runs" / run / "curves.nc").is_file():
        missing = ", ".join(a for a in ANALYSES if a not in metrics)
        return RunStatus(run, "partial", f"trained; {len(metrics)}/{len(ANALYSES)} metrics (missing: {missing})")
    log = study / "logs" / "train" / f"{run}.log"
    progress = training_progress(log.read_text(errors="replace"), now, log.stat().st_mtime) if log.is_file() else {}
    where = f" at epoch {progress['epoch']}/{progress['epochs']}" if "epoch" in progress else ""
    if "error" in progress:
        return RunStatus(run, "failed", f"{progress['error']} (see {log})")
    if run in failed_by_snakemake:
        return RunStatus(run, "failed", f"Snakemake reports the train job failed{where} "
                                        f"(see {log} and .snakemake/log/)")
    if workdir is not None and snakemake_incomplete(workdir, study, run):
        return RunStatus(run, "failed", f"killed{where}: Snakemake marked it incomplete and is not running")
    if not log.is_file():
        return RunStatus(run, "missing")
    if progress.get("done"):
        return RunStatus(run, "missing", "trained once, but runs/<run>/curves.nc is gone")
    if "epoch" not in progress:
        return RunStatus(run, "running", "starting (no epoch logged yet)")
    detail = f"epoch {progress['epoch']}/{progress['epochs']}"
    rate, eta = progress["rate"], progress.get("eta_s")
    if rate is not None:
        detail += f", {rate:.2f} s/epoch, ETA {format_duration(eta)}"
    if progress["since_s"] > max(STALLED_AFTER_S, 10 * (rate or 0)):
        detail += f"; no log line for {format_duration(progress['since_s'])}: stalled?"
    return RunStatus(run, "running", detail, eta)


STATES = ("done", "partial", "running", "failed", "missing")


def study_status(study: Path, config: Path | None = None, now: float | None = None) -> list[RunStatus]:
    """Every run of the study (on disk, plus those `config` asks for), with its state."""
    runs = listed_runs(study)
    if config is not None:
        runs |= set(config_runs(config, study))
    if not runs:
        raise CliError(f"{study}: not a study directory (no runs/, metrics/ or logs/train/ with runs; "
                       "give --config to list the runs of a study not started yet)")
    now = time.time() if now is None else now
    workdir = study_workdir(study)
    failed = snakemake_failures(workdir) if workdir else set()
    return [run_status(study, run, workdir, failed, now) for run in sorted(runs)]


def status_counts(statuses: list[RunStatus]) -> dict[str, int]:
    return {state: n for state in STATES if (n := sum(s.state == state for s in statuses))}


def status_lines(statuses: list[RunStatus]) -> list[str]:
    """One line per run (state, details), then a summary line."""
    width = max(len(s.run) for s in statuses)
    lines = [f"{s.run:<{width}}  {s.state:<7}  {s.detail}".rstrip() for s in statuses]
    summary = f"{len(statuses)} runs: " + ", ".join(f"{n} {state}" for state, n in status_counts(statuses).items())
    etas = [s.eta_s for s in statuses if s.eta_s is not None]
    if etas:
        summary += f"; training ends in {format_duration(max(etas))} (slowest running run)"
    return lines + [summary]


def status_json(study: Path, statuses: list[RunStatus]) -> str:
    """The same as status_lines, for scripts: {study, runs: [{run, state, detail, eta_s}], counts, eta_s}."""
    etas = [s.eta_s for s in statuses if s.eta_s is not None]
    return json.dumps({"study": str(study), "runs": [asdict(s) for s in statuses], "counts": status_counts(statuses),
                       "eta_s": max(etas) if etas else None}, indent=1)


def snakemake_active(study: Path) -> bool:
    """A Snakemake holds the study's working directory (its lock files exist while it runs)."""
    workdir = study_workdir(study)
    locks = workdir / ".snakemake" / "locks" if workdir else None
    return bool(locks and locks.is_dir() and any(locks.iterdir()))


def watch(study: Path, config: Path | None, every_s: float, as_json: bool) -> None:
    """Print the status every `every_s` seconds while a run trains or a Snakemake holds the study (or Ctrl-C)."""
    while True:
        statuses = study_status(study, config)
        text = status_json(study, statuses) if as_json else "\n".join(status_lines(statuses))
        if sys.stdout.isatty() and not as_json:
            text = "\033[H\033[J" + time.strftime("%H:%M:%S\n") + text  # redraw in place
        print(text, flush=True)
        if not any(s.state == "running" for s in statuses) and not snakemake_active(study):
            return
        time.sleep(every_s)


def config_runs(path: Path, study: Path) -> list[str]:
    """Every run a config asks for (layered over the default study, as `snakemake --configfile` takes it);
    refuses the config of another study (its runs would all show as missing)."""
    from ddscope.config import ConfigError, run_names, study_config, validate_config

    try:
        config = validate_config(study_config([path]))
    except ConfigError as error:
        raise CliError(str(error).splitlines()[0]) from None
    if config["study"] != study.resolve().name:
        raise CliError(f"{path} is the config of study {config['study']!r}, not of {study}")
    return run_names(config)


def export(study: str, out: Path) -> None:
    """Write open_study's tree to one NetCDF file (groups, h5netcdf) or one Zarr store (format 2,
    consolidated: xr.open_datatree reads it back without warnings; v3 warns on string coordinates)."""
    from ddscope.study import open_study

    if out.suffix not in (".nc", ".zarr"):
        raise CliError(f"{out}: the output must end in .nc or .zarr")
    if not out.parent.is_dir():
        raise CliError(f"{out.parent}: no such directory")
    tree = open_study(study)
    if out.suffix == ".nc":
        tree.to_netcdf(out, engine="h5netcdf")
    else:
        tree.to_zarr(out, mode="w", zarr_format=2, consolidated=True)


def _parser() -> argparse.ArgumentParser:
    from ddscope import __version__

    parser = argparse.ArgumentParser(prog="ddscope", description="Inspect a ddscope study (results/<study>).")
    parser.add_argument("--version", action="version", version=f"ddscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="each run's state and ETA, then a summary line")
    status.add_argument("study", type=Path, help="the study directory, results/<study>")
    status.add_argument("--config", type=Path, help="also list the runs this config asks for (not started: missing)")
    status.add_argument("--json", action="store_true", help="machine-readable: one JSON object")
    status.add_argument("--watch", type=float, nargs="?", const=10.0, metavar="SECONDS",
                        help="repeat every SECONDS (default 10) until no run is running or partial")
    out = sub.add_parser("export", help="write the study as one DataTree file (.nc or .zarr)")
    out.add_argument("study", help="the study directory or an s3://bucket/prefix URL")
    out.add_argument("out", type=Path, help="out.nc or out.zarr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ddscope` command; returns the exit status."""
    from ddscope.artifacts import ArtifactError

    args = _parser().parse_args(argv)
    try:
        if args.command == "status":
            if not args.study.is_dir():
                raise CliError(f"{args.study}: no such directory")
            if args.watch is not None:
                watch(args.study, args.config, args.watch, args.json)
            else:
                statuses = study_status(args.study, args.config)
                print(status_json(args.study, statuses) if args.json else "\n".join(status_lines(statuses)))
        else:
            from ddscope.study import StudyError

            try:
                export(args.study, args.out)
            except StudyError as error:
                raise CliError(str(error)) from None
            print(f"wrote {args.out}")
    except CliError as error:
        print(f"ddscope: error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:  # the way out of --watch
        return 0
    except (ArtifactError, OSError) as error:  # a broken artifact; S3 refusing access; a full disk
        print(f"ddscope: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
