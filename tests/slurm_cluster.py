"""A real single-node Slurm (munged, slurmctld, slurmd) for one test session, in a temp directory.

    with SlurmCluster() as cluster:      # or the `slurm` fixture of tests/test_slurm.py
        subprocess.run(["sbatch", ...])  # SLURM_CONF is exported while the cluster is up

Everything Slurm writes (slurm.conf, state, spool, daemon logs, PID files) lives in the cluster's own temp
directory under a fresh ClusterName, so leftover state of an earlier cluster (`fatal: CLUSTER NAME MISMATCH`)
cannot stop it from starting. The daemons run in the foreground as children of this process, on free ports;
on exit the jobs still queued are cancelled and exactly the PIDs started here are stopped (SIGTERM, then
SIGKILL after a timeout), also when start-up failed half-way. munged is started only when none is running.

No accounting (sacct fails), no GPU gres: see tests/test_slurm.py for the snakemake flags this needs.

SLURM_CONF alone does not reach every client: snakemake-executor-plugin-slurm-jobstep (0.6.1) removes all SLURM_*
variables but a few job ids from the environment of the `srun` it runs inside each batch job, so that srun finds
no configuration ("srun: fatal: Could not establish a configuration source"). The cluster therefore also puts
an `srun` wrapper that pins SLURM_CONF first on PATH (PATH travels into the job with sbatch --export=ALL).
Recipe and pitfalls: /work/shared/recipes/slurm-single-node.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sinfo", "squeue", "sbatch", "scancel", "srun", "scontrol")
MUNGE_KEY = Path("/etc/munge/munge.key")
MEMORY_MARGIN_MB = 1024  # RealMemory below MemTotal: a node that reports less than configured is drained


def _which(name: str) -> str | None:
    """The binary's path, also in the sbin directories a non-login PATH may lack."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def missing_requirement() -> str | None:
    """Why a Slurm cluster cannot be stood up here (None when it can)."""
    if os.geteuid() != 0:
        return "a real Slurm cluster needs root (slurmd runs jobs as any user; munged runs as user munge)"
    for name in DAEMONS + CLIENTS:
        if _which(name) is None:
            return f"{name} not found (apt-get install slurm-wlm munge)"
    if not MUNGE_KEY.exists() and _which("mungekey") is None:
        return f"{MUNGE_KEY} is missing and mungekey (to create it) not found"
    return None


def skip_unless_available() -> None:
    """pytest.skip with the precise reason when the cluster cannot run here."""
    reason = missing_requirement()
    if reason:
        import pytest

        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("MemTotal not in /proc/meminfo")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as error:
        return f"  ({path}: {error})"
    return "\n".join(f"  {line}" for line in text[-lines:]) or f"  ({path} is empty)"


def _munged_running() -> bool:
    result = subprocess.run(["pgrep", "-x", "munged"], capture_output=True, text=True)
    return result.returncode == 0


class SlurmError(RuntimeError):
    pass


class SlurmCluster:
    """Context manager: a one-node cluster (partition `main`) that is up inside the `with` block."""

    def __init__(self, root: str | Path | None = None, start_timeout: float = 60.0, stop_timeout: float = 15.0):
        # short path: slurmd puts unix sockets in its spool dir (108-byte limit); 0755 so user munge and the
        # job's user can traverse it
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="ddslurm-", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.name = "dd" + uuid.uuid4().hex[:8]  # ClusterName: fresh, lower case
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.memory_mb = _memory_mb() - MEMORY_MARGIN_MB
        self.conf = self.root / "slurm.conf"
        self.logs = {name: self.root / "log" / f"{name}.log" for name in DAEMONS}
        self.outputs = {name: self.root / "log" / f"{name}.out" for name in DAEMONS}
        self.bin = self.root / "bin"  # client wrappers, first on PATH while the cluster is up
        self.started: dict[str, subprocess.Popen] = {}  # exactly the processes this cluster started
        self._saved_env: dict[str, str | None] = {}

    # ---------------------------------------------------------------- configuration

    def write_conf(self) -> Path:
        state, spool, log = self.root / "state", self.root / "spool", self.root / "log"
        for d in (state, spool, log):
            d.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "\n".join(
                [
                    f"ClusterName={self.name}",
                    f"SlurmctldHost={self.node}",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"StateSaveLocation={state}",
                    f"SlurmdSpoolDir={spool}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.logs['slurmctld']}",
                    f"SlurmdLogFile={self.logs['slurmd']}",
                    "SlurmctldDebug=info",
                    "SlurmdDebug=info",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "KillWait=5",  # scancel: SIGTERM, SIGKILL 5 s later
                    "MinJobAge=300",  # finished jobs stay visible to squeue (the status command without sacct)
                    "JobCompType=jobcomp/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    f"NodeName={self.node} CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
                    f"PartitionName=main Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self.bin.mkdir(exist_ok=True)
        srun = self.bin / "srun"
        srun.write_text(f"#!/bin/sh\n# a job's srun without SLURM_CONF (see tests/slurm_cluster.py)\n"
                        f"SLURM_CONF={self.conf} exec {_which('srun')} \"$@\"\n")
        srun.chmod(0o755)
        return self.conf

    @property
    def env(self) -> dict[str, str]:
        """The environment of a Slurm client of this cluster."""
        return {**os.environ, **self._client_env()}

    def _client_env(self) -> dict[str, str]:
        path = os.environ.get("PATH", "")
        if path.split(os.pathsep)[0] != str(self.bin):
            path = os.pathsep.join([str(self.bin), path])
        return {"SLURM_CONF": str(self.conf), "PATH": path}

    # ---------------------------------------------------------------- start and stop

    def _spawn(self, name: str, cmd: list[str], **kwargs) -> None:
        out = open(self.outputs[name], "wb")
        try:
            self.started[name] = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True, **kwargs)
        finally:
            out.close()

    def _start_munged(self) -> None:
        if _munged_running():
            return  # the machine's munged serves this cluster too (default socket)
        if not MUNGE_KEY.exists():
            subprocess.run([_which("mungekey"), "-c", "-k", str(MUNGE_KEY)], check=True, capture_output=True)
        run_dir = Path("/run/munge")
        run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        for path in (run_dir, MUNGE_KEY):
            shutil.chown(path, "munge", "munge")
        # foreground (-F) so the PID is munged's own; --force: a socket left by a killed munged is not in use
        self._spawn("munged", [_which("munged"), "-F", "--force"], user="munge", group="munge", extra_groups=[])
        socket_path = run_dir / "munge.socket.2"
        self._wait(lambda: socket_path.exists(), "munged to create its socket", ["munged"])

    def start(self) -> "SlurmCluster":
        skip_unless_available()
        self.write_conf()
        # children (snakemake, its sbatch/squeue/scancel, the jobs) see this cluster
        client_env = self._client_env()
        self._saved_env = {name: os.environ.get(name) for name in client_env}
        os.environ.update(client_env)
        try:
            self._start_munged()
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
            self._wait(self._ping, "slurmctld to answer", ["slurmctld"])
            self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf)])
            self._wait(lambda: self.node_state() == "idle", f"node {self.node} to be idle", ["slurmctld", "slurmd"])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop the daemons started here: slurmd, slurmctld, munged."""
        try:
            if "slurmctld" in self.started and self.started["slurmctld"].poll() is None:
                self._cancel_all_jobs()
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                proc = self.started.pop(name, None)
                if proc is not None:
                    _terminate(proc, self.stop_timeout)
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._saved_env = {}

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- clients

    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster (text output)."""
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and result.returncode != 0:
            raise SlurmError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def _ping(self) -> bool:
        try:
            return self.run("scontrol", "ping", timeout=10, check=False).stdout.count("UP") > 0
        except subprocess.TimeoutExpired:
            return False

    def node_state(self) -> str:
        try:
            result = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%t", timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return "timeout"
        return result.stdout.strip() if result.returncode == 0 else "error"

    def jobs(self) -> list[dict[str, str]]:
        """The jobs squeue shows (running, pending and, for MinJobAge, finished): id, name, comment, state, and what
        each asked for: memory (MB) and CPUs."""
        out = self.run("squeue", "-h", "--states=all", "-o", "%i|%j|%T|%m|%C|%k").stdout
        jobs = []
        for line in filter(None, out.splitlines()):
            id_, name, state, mem, cpus, comment = line.split("|", 5)
            jobs.append({"id": id_, "name": name, "comment": comment, "state": state,
                         "mem_mb": round(float(mem[:-1]) * {"M": 1, "G": 1024, "T": 1024**2}[mem[-1]]), "cpus": int(cpus)})
        return jobs

    def _cancel_all_jobs(self) -> None:
        try:
            active = [j["id"] for j in self.jobs() if j["state"] in ("PENDING", "RUNNING", "CONFIGURING",
                                                                       "COMPLETING", "SUSPENDED")]
            if active:
                self.run("scancel", *active, check=False)
                deadline = time.monotonic() + self.stop_timeout
                while time.monotonic() < deadline and any(
                    j["state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") for j in self.jobs()
                ):
                    time.sleep(0.5)
        except (SlurmError, subprocess.TimeoutExpired):
            pass  # the daemons are stopped regardless

    def log_tails(self, names=("slurmctld", "slurmd"), lines: int = 25) -> str:
        parts = []
        for name in names:
            for path in (self.logs[name], self.outputs[name]):
                if path.exists():
                    parts.append(f"--- {path} (last {lines} lines)\n{_tail(path, lines)}")
        return "\n".join(parts)

    def _wait(self, ready, what: str, daemons: list[str]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            for name in daemons:
                proc = self.started.get(name)
                if proc is not None and proc.poll() is not None:
                    raise SlurmError(f"{name} exited with status {proc.returncode} while waiting for {what}\n"
                                     + self.log_tails([name], 40))
            if ready():
                return
            if time.monotonic() > deadline:
                state = f" (node state: {self.node_state()})" if "slurmd" in daemons else ""
                raise SlurmError(f"timed out after {self.start_timeout:.0f} s waiting for {what}{state}\n"
                                 + self.log_tails(daemons, 40))
            time.sleep(0.3)


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass
