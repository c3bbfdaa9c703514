"""Logging for workflow jobs: to the rule's log file and stderr, expected errors as one line."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from .artifacts import ArtifactError, TrainingFailed
from .config import ConfigError
from .data import DatasetError

EXPECTED_ERRORS = (ArtifactError, ConfigError, DatasetError, TrainingFailed)


def format_duration(seconds: float) -> str:
    """`2m14s`, `1h05m`: an ETA or a run time, as the progress lines and `ddscope status` print it."""
    m, s = divmod(int(round(max(seconds, 0))), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# `log.info(msg, extra=LOG_FILE_ONLY)`: a detail for the job's log file (every epoch), kept off the terminal,
# where parallel jobs interleave; `extra=TERMINAL_ONLY`: a short progress line the log file holds in full already
LOG_FILE_ONLY = {"ddscope_to": "file"}
TERMINAL_ONLY = {"ddscope_to": "terminal"}


def job_logger(log_path: str | Path | list | None, name: str = "ddscope") -> logging.Logger:
    """Log to stderr (the terminal under a local Snakemake) and, if given, to the rule's log file (or to each
    of a list of them: a training job's runs)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    terminal = logging.StreamHandler(sys.stderr)
    terminal.addFilter(lambda record: getattr(record, "ddscope_to", "terminal") == "terminal")
    handlers = [terminal]
    for path in [] if not log_path else log_path if isinstance(log_path, list) else [log_path]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="a"))
        handlers[-1].addFilter(lambda record: getattr(record, "ddscope_to", "file") == "file")
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    logger.propagate = False
    return logger


@contextlib.contextmanager
def expected_errors(logger: logging.Logger):
    """Turn ddscope's expected errors into one log line and exit status 1 (no traceback)."""
    try:
        yield
    except EXPECTED_ERRORS as e:
        logger.error(f"ddscope: {e}")
        sys.exit(1)
    except (MemoryError, RuntimeError) as e:
        # host memory (MemoryError) or GPU memory (torch.OutOfMemoryError, a RuntimeError; named here so that
        # this module does not import torch)
        if not isinstance(e, MemoryError) and type(e).__name__ != "OutOfMemoryError":
            raise
        where = "GPU" if type(e).__name__ == "OutOfMemoryError" else "host"
        logger.error(f"ddscope: out of {where} memory in this job: give it more (a cluster's mem_mb, a larger GPU) or "
                     "make the study smaller (dataset.n_train, model widths, probes, train.eval_batch_size)")
        sys.exit(1)
