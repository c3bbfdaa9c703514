"""The one epoch picker of every analysis that looks at a subset of the recorded epochs.

large_activation (its input/output tests) and probes (one probe per layer and epoch) both take
`n_epochs` epochs from the recorded schedule through this function, so the two look at the same epochs.
"""

from __future__ import annotations

import numpy as np


def spread_epoch_indices(epochs, n: int) -> np.ndarray:
    """Indices of `n` recorded epochs spread log-uniformly over the schedule, first and last included.

    Targets are log-spaced in (epoch − first epoch + 1) between the first and the last recorded epoch (so
    epoch 0, the initialisation, works); each target takes the nearest recorded epoch not taken yet, so
    targets crowding into the dense early epochs still give distinct epochs. Returns sorted, distinct
    indices; all of them when `n` is at least the number of recorded epochs; the last one when n = 1.
    """
    epochs = np.asarray(epochs, dtype=np.float64)
    m = len(epochs)
    if n >= m:
        return np.arange(m)
    if n <= 1:
        return np.array([m - 1])
    pos = np.log1p(epochs - epochs[0])
    targets = np.linspace(pos[0], pos[-1], n)
    chosen: list[int] = [0, m - 1]
    for target in targets[1:-1]:
        free = np.setdiff1d(np.arange(m), chosen)
        chosen.append(int(free[np.argmin(np.abs(pos[free] - target))]))
    return np.array(sorted(chosen))
