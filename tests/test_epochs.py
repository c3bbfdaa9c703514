"""The one epoch picker (large_activation and probes look at the same epochs)."""

import numpy as np

from ddscope.config import record_epochs
from ddscope.analyses.epochs import spread_epoch_indices


def test_spread_on_a_log_axis_first_and_last_included():
    epochs = np.array(list(range(11)) + [13, 17, 23, 31, 42, 57, 77, 104, 140, 190, 256, 300])
    idx = spread_epoch_indices(epochs, 8)
    assert len(idx) == 8 and idx[0] == 0 and idx[-1] == len(epochs) - 1 and np.all(np.diff(idx) > 0)
    gaps = np.diff(np.log1p(epochs[idx]))
    assert gaps.max() < 3 * gaps.min() + 0.5  # roughly even on a log axis


def test_edge_cases():
    assert list(spread_epoch_indices([0, 1, 2], 8)) == [0, 1, 2]
    assert list(spread_epoch_indices([0, 1, 2, 3], 2)) == [0, 3]
    assert list(spread_epoch_indices([0, 1, 2, 3], 1)) == [3]
    # targets crowding into the dense early epochs still give distinct epochs
    assert len(set(spread_epoch_indices(np.arange(12), 12))) == 12
    assert len(set(spread_epoch_indices(np.r_[np.arange(11), 300], 10))) == 10
    assert len(spread_epoch_indices(np.arange(6), 5)) == 5


def test_shipped_schedules_pick_the_epochs_both_former_pickers_picked():
    # the default and the paper schedule: unifying the two pickers changed no analysed epoch
    default = np.array(record_epochs({"epochs": {"first": 10, "log_count": 40}}, 600))
    assert list(default[spread_epoch_indices(default, 8)]) == [0, 2, 5, 15, 38, 95, 239, 600]
    paper = np.array(record_epochs({"epochs": {"first": 20, "log_count": 60}}, 1000))
    assert list(paper[spread_epoch_indices(paper, 8)]) == [0, 2, 6, 18, 50, 141, 376, 1000]
