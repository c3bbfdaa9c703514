"""Logging for workflow jobs: to the rule's log file and stderr, expected errors as one line."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from .artifacts import ArtifactError
from .config import ConfigError
from .data import DatasetError

EXPECTED_ERRORS = (ArtifactError, ConfigError, DatasetError)


def job_logger(log_path: str | Path | None, name: str = "ddscope") -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
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
