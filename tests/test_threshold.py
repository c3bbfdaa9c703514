"""Unit tests of ddscope.threshold: teacher, data, alignment measure, threshold estimator, training, sweep.

Properties with tolerances on constructed inputs; the training checks use tiny problems (seconds).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from ddscope.threshold import findings as th_findings
from ddscope.threshold import keys as th_keys
from ddscope.threshold import student as th_student
from ddscope.threshold import sweep as th_sweep
from ddscope.threshold import teacher as th_teacher
from ddscope.artifacts import write_netcdf
from ddscope.plots import THRESHOLD_FIGURES as PLOTS
from ddscope.plots import band_stats as seed_band
from ddscope.plots import save_figure


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Like a workflow job with threads: 1 (tiny batched ops only lose from intra-op threads on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- grids ----------------------------------------------------------------------------------------------


def test_n_grid_is_log_spaced_with_endpoints():
    grid = th_keys.n_grid(4, 1024, 9)
    assert grid == [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert th_keys.n_grid(8, 8, 5) == [8]
    assert th_keys.n_grid(5, 50, 1) == [5]
    dense = th_keys.n_grid(1, 10, 50)  # rounding collapses duplicates
    assert dense == sorted(set(dense)) and dense[0] == 1 and dense[-1] == 10
    with pytest.raises(ValueError):
        th_keys.n_grid(10, 5, 3)


def test_step_grid():
    steps = th_keys.step_grid(1000, 20)
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == 1000
    assert steps == sorted(set(steps))
    large = np.array([s for s in steps if s >= 4], dtype=float)
    assert np.diff(np.log(large)).max() < 0.5  # log-spaced: no big gaps (small steps are consecutive integers)
    assert th_keys.step_grid(3, 50) == [0, 1, 2, 3]


def test_rule_params_drop_keys_that_do_not_matter():
    cfg = {"teacher": "linear", "teacher_neurons": 3, "d": 4, "seed": 0, "n_test": 10, "optimizer": "gd",
           "betas": [0.9, 0.999], "lr": 0.1}
    assert "teacher_neurons" not in th_keys.rule_params(cfg, th_keys.TEACHER_KEYS)
    assert "betas" not in th_keys.rule_params(cfg, ["lr", "betas", "optimizer"])
    assert th_keys.rule_params({**cfg, "teacher": "relu"}, th_keys.TEACHER_KEYS)["teacher_neurons"] == 3
    assert th_keys.rule_params({**cfg, "optimizer": "adam"}, ["betas"]) == {"betas": [0.9, 0.999]}
    assert th_keys.rule_params(None, th_keys.TEACHER_KEYS) == {}


# --- teacher and data -----------------------------------------------------------------------------------


def test_linear_teacher_equals_its_formula():
    teacher = th_teacher.make_teacher("linear", 5, seed=3)
    w, a = teacher["teacher_w"], teacher["teacher_a"]
    assert w.shape == (1, 5) and a.shape == (1,)
    assert np.linalg.norm(w[0]) == pytest.approx(1.0, abs=1e-6)
    x = np.random.default_rng(0).standard_normal((100, 5)).astype(np.float32)
    np.testing.assert_allclose(th_teacher.teacher_output(teacher, x, "linear"), x @ w[0], rtol=1e-5, atol=1e-6)
    dirs = th_teacher.teacher_directions(teacher, "linear")
    np.testing.assert_allclose(dirs, np.stack([w[0], -w[0]]), atol=1e-6)
    # same seed, same teacher; another seed, another one
    np.testing.assert_array_equal(th_teacher.make_teacher("linear", 5, seed=3)["teacher_w"], w)
    assert not np.allclose(th_teacher.make_teacher("linear", 5, seed=4)["teacher_w"], w)


@pytest.mark.parametrize("neurons", [1, 3, 6])
def test_relu_teacher_neurons_formula_and_scale(neurons):
    teacher = th_teacher.make_teacher("relu", 4, neurons=neurons, seed=1)
    w, a = teacher["teacher_w"], teacher["teacher_a"]
    assert w.shape == (neurons, 4) and a.shape == (neurons,)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-6)
    assert np.all(np.sign(a) == np.where(np.arange(neurons) % 2 == 0, 1, -1))
    x = np.random.default_rng(1).standard_normal((200_000, 4)).astype(np.float32)
    y = th_teacher.teacher_output(teacher, x, "relu")
    np.testing.assert_allclose(y[:50], np.maximum(x[:50] @ w.T, 0) @ a, rtol=1e-4, atol=1e-5)
    assert np.mean(y.astype(np.float64) ** 2) == pytest.approx(1.0, abs=0.03)  # scaled to E[f*²] = 1
    assert th_teacher.teacher_directions(teacher, "relu").shape == (neurons, 4)


def test_relu_kernel_matches_monte_carlo():
    rng = np.random.default_rng(2)
    u = rng.standard_normal((3, 5))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    x = rng.standard_normal((400_000, 5))
    h = np.maximum(x @ u.T, 0)
    np.testing.assert_allclose(th_teacher.relu_kernel(u, u), h.T @ h / len(x), atol=0.01)
    assert th_teacher.relu_kernel(u[:1], u[:1])[0, 0] == pytest.approx(0.5)


def test_unknown_teacher_is_refused():
    with pytest.raises(ValueError, match="linear, relu"):
        th_teacher.make_teacher("quadratic", 3)


def test_training_sets_are_nested_seeded_and_noisy():
    teacher = th_teacher.make_teacher("linear", 3, seed=0)
    small = th_teacher.training_sets(teacher, "linear", 3, 8, 0.25, 0, [0, 1])
    large = th_teacher.training_sets(teacher, "linear", 3, 5000, 0.25, 0, [0, 1])
    assert small["x"].shape == (2, 8, 3) and small["y"].shape == (2, 8) and small["seeds"].tolist() == [0, 1]
    for key in ("x", "y", "noise"):  # the set of size n is the first n samples of a larger one
        np.testing.assert_array_equal(small[key], large[key][:, :8])
    assert not np.allclose(large["x"][0], large["x"][1])  # seeds differ
    np.testing.assert_allclose(large["y"] - large["noise"], large["x"] @ teacher["teacher_w"][0], atol=1e-5)
    assert large["noise"].var() == pytest.approx(0.25, rel=0.05)
    again = th_teacher.training_sets(teacher, "linear", 3, 8, 0.25, 0, [0, 1])
    np.testing.assert_array_equal(again["y"], small["y"])


def test_test_set_is_noiseless_and_fixed():
    teacher = th_teacher.make_teacher("relu", 3, neurons=2, seed=0)
    x, y = th_teacher.make_test_set(teacher, "relu", 3, 500, seed=0)
    assert x.shape == (500, 3) and y.shape == (500,)
    np.testing.assert_allclose(y, th_teacher.teacher_output(teacher, x, "relu"))
    np.testing.assert_array_equal(th_teacher.make_test_set(teacher, "relu", 3, 500, seed=0)[0], x)


def test_init_student_is_small_and_balanced():
    w, a = th_student.init_student(50, 4, 1e-3, 0, 1)
    assert w.shape == (50, 4) and a.shape == (50,)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1e-3, rtol=1e-5)
    np.testing.assert_allclose(np.abs(a), 1e-3, rtol=1e-6)
    assert 0 < (a > 0).sum() < 50


# --- alignment ------------------------------------------------------------------------------------------


def test_cosine_of_identical_and_orthogonal_directions():
    u = np.array([[1.0, 0.0, 0.0]])
    w = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    cos = th_student.alignment_cosines(w, u)
    np.testing.assert_allclose(cos, [1.0, 0.0, -1.0, 1 / math.sqrt(2)], atol=1e-12)
    # scale invariant; the best of several directions; a zero neuron has no direction
    np.testing.assert_allclose(th_student.alignment_cosines(5 * w, u), cos, atol=1e-12)
    both = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(th_student.alignment_cosines(w, both)[:2], [1.0, 1.0])
    assert np.isnan(th_student.alignment_cosines(np.zeros((1, 3)), u)[0])
    # batched: [..., m, d] -> [..., m]
    assert th_student.alignment_cosines(np.stack([w, w]), u).shape == (2, 4)


def test_linear_teacher_directions_count_both_signs():
    teacher = th_teacher.make_teacher("linear", 4, seed=0)
    beta = teacher["teacher_w"][0]
    dirs = th_teacher.teacher_directions(teacher, "linear")
    np.testing.assert_allclose(th_student.alignment_cosines(np.stack([beta, -beta]), dirs), [1.0, 1.0], atol=1e-6)


def test_aligned_fraction_on_a_constructed_set():
    cos = np.array([1.0, 0.95, 0.9, 0.5, -1.0, np.nan, 0.2, 0.99, 0.0, 0.91])
    assert th_student.aligned_fraction(cos, 0.9) == pytest.approx(0.5)  # 1, .95, .9, .99, .91
    assert th_student.aligned_fraction(cos, 0.99) == pytest.approx(0.2)
    assert th_student.aligned_fraction(cos, -1.0) == pytest.approx(0.9)  # NaN never counts
    np.testing.assert_allclose(th_student.aligned_fraction(np.stack([cos, -cos]), 0.9), [0.5, 0.1])


def test_early_phase_end():
    loss = np.array([[1.0, 1.0, 0.99, 0.9, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0, 0.97, 0.96], [2.0, 1.9, 1.8, 1, 1, 1]])
    np.testing.assert_array_equal(th_student.early_phase_end(loss, 0.05), [3, -1, 1])
    np.testing.assert_array_equal(th_student.early_phase_end(loss, 0.03), [3, 4, 1])


# --- the threshold estimator ----------------------------------------------------------------------------

GRID = [8, 16, 32, 64, 128, 256, 512]


def test_threshold_interpolating_up_to_64():
    flags = np.array([True, True, True, True, False, False, False])
    assert th_sweep.estimate_threshold(GRID, flags) == 128
    assert th_sweep.threshold_bracketed(GRID, 128.0) and th_sweep.is_monotone(flags)


def test_threshold_never_stops_interpolating_is_inf():
    flags = np.ones(len(GRID), dtype=bool)
    assert math.isinf(th_sweep.estimate_threshold(GRID, flags))  # beyond the grid
    assert not th_sweep.threshold_bracketed(GRID, math.inf)


def test_threshold_never_interpolating_is_the_smallest_n():
    flags = np.zeros(len(GRID), dtype=bool)
    assert th_sweep.estimate_threshold(GRID, flags) == 8  # at most n_min
    assert not th_sweep.threshold_bracketed(GRID, 8.0)


def test_threshold_non_monotone_takes_the_last_switch():
    # an isolated non-interpolating n below a later interpolating one is noise: threshold after the last one
    flags = np.array([True, False, True, True, False, False, False])
    assert th_sweep.estimate_threshold(GRID, flags) == 128
    assert not th_sweep.is_monotone(flags)
    flags = np.array([True, True, False, False, True, False, False])
    assert th_sweep.estimate_threshold(GRID, flags) == 256


def test_threshold_over_seeds_uses_the_majority():
    # [n, seed]: 3 seeds; n = 64 interpolates in 2 of 3 seeds, n = 128 in 1 of 3
    per_seed = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=bool)
    assert th_sweep.estimate_threshold(GRID, per_seed, majority=0.5) == 128
    assert th_sweep.estimate_threshold(GRID, per_seed, majority=0.3) == 256
    assert th_sweep.estimate_threshold(GRID, per_seed, majority=1.0) == 64
    assert th_sweep.estimate_threshold(GRID, per_seed.mean(axis=1), majority=0.5) == 128  # fractions work too


def test_threshold_rejects_bad_grids():
    with pytest.raises(ValueError):
        th_sweep.estimate_threshold([8, 4], [True, False])
    with pytest.raises(ValueError):
        th_sweep.estimate_threshold([4, 8], [True, False, False])


# --- training -------------------------------------------------------------------------------------------


def _tiny_problem(n, d=3, m=10, seeds=(0, 1), init=1e-3, noise_var=0.25):
    teacher = th_teacher.make_teacher("linear", d, seed=0)
    data = th_teacher.training_sets(teacher, "linear", d, n, noise_var, 0, list(seeds))
    x_test, y_test = th_teacher.make_test_set(teacher, "linear", d, 2000, seed=0)
    inits = [th_student.init_student(m, d, init, 0, s) for s in seeds]
    w0, a0 = np.stack([w for w, _ in inits]), np.stack([a for _, a in inits])
    return teacher, data, x_test, y_test, w0, a0


def test_manual_gradients_match_autograd():
    teacher, data, x_test, y_test, w0, a0 = _tiny_problem(16, m=20, init=0.5)
    lr = 0.05
    out = th_student.train_students(data["x"], data["y"], x_test, y_test, w0, a0, th_teacher.teacher_directions(teacher, "linear"),
                           steps=1, lr=lr, record_steps=[0, 1])
    x, y = torch.tensor(data["x"], dtype=torch.float64), torch.tensor(data["y"], dtype=torch.float64)
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
    f = (torch.relu(torch.einsum("snd,smd->snm", x, w)) * a[:, None, :]).sum(-1)
    loss = ((f - y) ** 2).mean(dim=1).sum()
    loss.backward()
    np.testing.assert_allclose(out["w"], (w - lr * w.grad).detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["a"], (a - lr * a.grad).detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["train_loss"][:, 0], ((f - y) ** 2).mean(dim=1).detach().numpy(), rtol=1e-5)


def test_tiny_n_interpolates_and_large_n_does_not():
    losses = {}
    steps = th_keys.step_grid(1500, 20)
    for n in (4, 128):
        teacher, data, x_test, y_test, w0, a0 = _tiny_problem(n)
        out = th_student.train_students(data["x"], data["y"], x_test, y_test, w0, a0, th_teacher.teacher_directions(teacher, "linear"),
                               steps=1500, lr=0.2, record_steps=steps)
        assert out["train_loss"].shape == out["test_loss"].shape == (2, len(steps))
        assert out["cosine"].shape == out["neuron_norm"].shape == (2, len(steps), 10)
        losses[n] = out
    noise_var = 0.25
    assert np.all(losses[4]["train_loss"][:, -1] < 0.01 * noise_var)  # fits the noisy labels
    assert np.all(losses[128]["train_loss"][:, -1] > 0.5 * noise_var)  # stays near the simple solution
    assert losses[128]["test_loss"][:, -1].mean() < 0.1 * losses[4]["test_loss"][:, -1].mean()
    # early alignment: with 128 samples the neurons end up along ±β; with 4 most do not
    assert np.nanmean(losses[128]["cosine"][:, -1] > 0.9) > 0.9
    assert np.nanmean(losses[4]["cosine"][:, -1] > 0.9) < 0.5


def test_adam_trains():
    teacher, data, x_test, y_test, w0, a0 = _tiny_problem(32, init=1e-2)
    out = th_student.train_students(data["x"], data["y"], x_test, y_test, w0, a0, th_teacher.teacher_directions(teacher, "linear"),
                           steps=300, lr=0.01, optimizer="adam", record_steps=[0, 300])
    assert np.all(out["train_loss"][:, -1] < 0.5 * out["train_loss"][:, 0])
    with pytest.raises(ValueError, match="gd, adam"):
        th_student.train_students(data["x"], data["y"], x_test, y_test, w0, a0, np.eye(3), 1, 0.1, optimizer="sgd")


# --- sweep, findings, figures ---------------------------------------------------------------------------


CRITERIA = {"interpolation_tol": 0.01, "majority": 0.5, "align_threshold": 0.9, "early_loss_drop": 0.05,
            "converged_tol": 0.01, "break_ratio": 0.5}


def synthetic_sweep(interpolating_n=(4, 8), grid=(4, 8, 16, 32), seeds=(0, 1), m=6, noise_var=0.25, test=None,
                    moving_n=(), **criteria):
    """Per-n run datasets where the n in `interpolating_n` end at train loss 0 and the others at noise_var;
    final test loss test(n, interpolates), by default 1 (interpolating) and 0.1/n (not); the non-interpolating
    runs of the n in `moving_n` are still falling over the last half of the steps (not converged); cosines rise
    with n."""
    test = test or (lambda n, fits: 1.0 if fits else 0.1 / n)
    steps = np.array([0, 1, 10, 100, 1000])
    runs = []
    for n in grid:
        fits = n in interpolating_n
        final = 1e-6 if fits else noise_var
        before = 1.5 * final if n in moving_n and not fits else final
        train = np.tile([1.2, 1.2, 0.5, before, final], (len(seeds), 1))
        loss = np.tile([1.0, 1.0, 0.5, test(n, fits), test(n, fits)], (len(seeds), 1))
        cos = np.full((len(seeds), len(steps), m), 0.3)
        cos[:, 2:, : min(m, n // 4)] = 0.99
        result = {"train_loss": train, "test_loss": loss, "cosine": cos, "neuron_norm": np.ones_like(cos),
                  "steps": steps, "a": np.ones((len(seeds), m))}
        runs.append(th_sweep.run_dataset(n, list(seeds), result, {"noise_var": noise_var}))
    attrs = {"teacher": "linear", "d": 3, "train_width": m, "train_init_scale": 1e-6, "train_lr": 0.1,
             "train_steps": 1000, "train_optimizer": "gd"}
    return th_sweep.build_sweep(runs[::-1], {**CRITERIA, **criteria}, noise_var, attrs)  # run order does not matter


def test_build_sweep_variables_and_threshold():
    ds = synthetic_sweep()
    assert ds.n.values.tolist() == [4, 8, 16, 32]
    for name in ("train_loss", "test_loss", "aligned_fraction_curve"):
        assert ds[name].dims == ("n", "seed", "step")
    for name in ("final_train_loss", "final_test_loss", "interpolates", "aligned_fraction", "early_step",
                 "final_rel_change", "converged"):
        assert ds[name].dims == ("n", "seed")
    for name in ("point_converged", "break_fit_below", "break_fit_beyond"):
        assert ds[name].dims == ("n",) and ds[name].dtype == bool
    assert ds.early_cosine.dims == ("n", "seed", "neuron")
    assert ds.interpolates.values[:, 0].tolist() == [True, True, False, False]
    assert float(ds.n_threshold) == 16 and ds.attrs["n_threshold"] == 16
    assert ds.n_threshold_seed.values.tolist() == [16, 16]
    assert ds.attrs["threshold_bracketed"] == 1 and ds.attrs["interpolation_monotone"] == 1
    assert ds.attrs["converged_tol"] == 0.01 and ds.attrs["break_ratio"] == 0.5
    assert ds.early_step.values[0, 0] == 10  # first step with loss <= 0.95 x the initial 1.2
    np.testing.assert_allclose(ds.aligned_fraction.values[:, 0], [1 / 6, 2 / 6, 4 / 6, 1.0])
    assert ds.converged.values.all() and ds.point_converged.values.all()
    # the break: flat interpolating trend 1 below n* = 16, 0.1/n beyond it, compared at sqrt(8 x 16)
    assert ds.break_fit_below.values.tolist() == [True, True, False, False]
    assert ds.break_fit_beyond.values.tolist() == [False, False, True, True]
    cut = math.sqrt(8 * 16)
    assert float(ds.test_break_n) == pytest.approx(cut)
    assert float(ds.test_slope_below) == pytest.approx(0.0, abs=1e-9)
    assert float(ds.test_slope_beyond) == pytest.approx(-1.0, rel=1e-6)
    assert float(ds.test_break) == pytest.approx(0.1 / cut, rel=1e-6)
    for name in ds.data_vars:
        assert ds[name].attrs.get("description"), name


def test_final_rel_change_measures_movement_over_the_last_half():
    steps = [0, 10, 40, 60, 100]  # the window starts at 40, the last recorded step <= 50
    loss = np.array([
        [5.0, 2.0, 1.0, 1.0, 1.0],  # settled before the window: 0
        [5.0, 2.0, 1.5, 1.2, 1.0],  # still falling: 0.5
        [5.0, 2.0, 1.0, 1.3, 1.0],  # a spike counts as movement: 0.3
        [5.0, 2.0, 0.0, 0.0, 0.0],  # interpolated exactly, settled: 0
        [5.0, 2.0, 0.1, 0.0, 0.0],  # reached 0 inside the window: inf
        [5.0, 2.0, 1.0, np.nan, np.nan],  # diverged: NaN
    ])
    rel = th_sweep.final_rel_change(loss, steps)
    np.testing.assert_allclose(rel[:4], [0.0, 0.5, 0.3, 0.0])
    assert np.isinf(rel[4]) and np.isnan(rel[5])
    assert th_sweep.final_rel_change(loss[None], steps).shape == (1, 6)  # [n, seed, step] -> [n, seed]
    with pytest.raises(ValueError):
        th_sweep.final_rel_change(loss, [0, 1, 2])
    flags = np.array([[True, False], [False, False]])
    conv = np.array([[False, True], [True, False]])
    assert th_sweep.point_converged(flags, conv).tolist() == [True, False]


def test_loglog_trend_recovers_a_power_law():
    n = np.array([4.0, 4.0, 16.0, 64.0])
    intercept, slope = th_sweep.loglog_trend(n, 3.0 * n ** -0.7)
    assert slope == pytest.approx(-0.7) and math.exp(intercept) == pytest.approx(3.0)
    assert all(math.isnan(v) for v in th_sweep.loglog_trend(np.array([8.0, 8.0]), np.array([1.0, 2.0])))
    assert all(math.isnan(v) for v in th_sweep.loglog_trend(np.array([]), np.array([])))
    with pytest.raises(ValueError):
        th_sweep.loglog_trend(np.array([1.0, 2.0]), np.array([1.0, 0.0]))


def test_break_at_threshold_compares_trends_not_sample_sizes():
    n = np.array([4, 8, 16, 32, 64])
    fits = np.array([[True], [True], [False], [False], [False]])
    done = np.ones_like(fits)
    # test loss ∝ 1/n throughout: it falls past n* = 16, but only as its trend does -> no break (ratio 1)
    smooth = th_sweep.break_at_threshold(n, 2.0 / n[:, None], fits, done, 16.0)
    assert smooth["ratio"] == pytest.approx(1.0, rel=1e-6)
    # the same trend, one decade lower from n* on -> ratio 0.1 wherever the regimes are compared
    step = th_sweep.break_at_threshold(n, np.where(fits, 2.0, 0.2) / n[:, None], fits, done, 16.0)
    assert step["ratio"] == pytest.approx(0.1, rel=1e-6) and step["n_cut"] == pytest.approx(math.sqrt(128))
    assert step["n_below"].tolist() == [4, 8] and step["n_beyond"].tolist() == [16, 32, 64]
    # a grid point with a non-interpolating run still moving is left out of the fit beyond n*
    moving = done.copy()
    moving[2, 0] = False
    part = th_sweep.break_at_threshold(n, np.where(fits, 2.0, 0.2) / n[:, None], fits, moving, 16.0)
    assert part["n_beyond"].tolist() == [32, 64] and part["ratio"] == pytest.approx(0.1, rel=1e-6)
    # fewer than two grid points on a side, or no bracketed threshold: not estimable
    moving[3, 0] = False
    assert math.isnan(th_sweep.break_at_threshold(n, 1.0 / n[:, None], fits, moving, 16.0)["ratio"])
    assert math.isnan(th_sweep.break_at_threshold(n, 1.0 / n[:, None], fits, done, math.inf)["ratio"])
    with pytest.raises(ValueError):
        th_sweep.break_at_threshold(n, np.ones((5, 2)), fits, done, 16.0)


def test_t1_supported_by_a_break_at_the_threshold():
    rows = th_findings.findings_rows(synthetic_sweep())
    assert [r[4] for r in rows] == [th_findings.SUPPORTED, th_findings.SUPPORTED]
    measured = rows[0][2]
    assert "n* = 16" in measured and "non-interpolating runs converged: 4 of 4" in measured
    assert "ratio 0.00884" in measured
    assert all("Boursier & Flammarion 2025" in r[1] and r[1].startswith("“") for r in rows)


def test_t1_refuted_when_the_test_loss_only_follows_its_trend():
    # test loss 1/n everywhere: lower past n* than before it (the old criterion said supported), but no break
    rows = th_findings.findings_rows(synthetic_sweep(grid=(4, 8, 16, 32, 64), test=lambda n, fits: 1.0 / n))
    assert rows[0][4] == th_findings.NOT_SUPPORTED and "ratio 1" in rows[0][2]
    # a drop, but smaller than break_ratio asks for
    mild = synthetic_sweep(test=lambda n, fits: (1.0 if fits else 0.7) / n)
    assert float(mild.test_break) == pytest.approx(0.7, rel=1e-6)
    assert th_findings.findings_rows(mild)[0][4] == th_findings.NOT_SUPPORTED
    assert th_findings.findings_rows(synthetic_sweep(test=lambda n, fits: (1.0 if fits else 0.7) / n,
                                                     break_ratio=0.8))[0][4] == th_findings.SUPPORTED


def test_t1_inconclusive_without_converged_runs_or_a_bracketed_threshold():
    # the non-interpolating runs of 16 and 32 are still moving: no trend beyond n*
    moving = synthetic_sweep(moving_n=(16, 32))
    assert not moving.converged.values[2:].any() and moving.converged.values[:2].all()
    assert moving.point_converged.values.tolist() == [True, True, False, False]
    rows = th_findings.findings_rows(moving)
    assert rows[0][4] == th_findings.INCONCLUSIVE
    assert "converged: 0 of 4" in rows[0][2] and "not estimable: fewer than two grid points beyond n*" in rows[0][2]
    # the same runs count as converged with a looser tolerance
    loose = synthetic_sweep(moving_n=(16, 32), converged_tol=0.6)
    assert th_findings.findings_rows(loose)[0][4] == th_findings.SUPPORTED
    # one grid point still moving: left out, the others still decide
    rows = th_findings.findings_rows(synthetic_sweep(grid=(4, 8, 16, 32, 64), moving_n=(16,)))
    assert rows[0][4] == th_findings.SUPPORTED and ": 32, 64 (of 3)" in rows[0][2]
    never = th_findings.findings_rows(synthetic_sweep(interpolating_n=(4, 8, 16, 32)))
    assert never[0][4] == th_findings.INCONCLUSIVE and "beyond the grid" in never[0][2]
    none = th_findings.findings_rows(synthetic_sweep(interpolating_n=()))
    assert none[0][4] == th_findings.INCONCLUSIVE


def test_t2_verdicts():
    assert th_findings.findings_rows(synthetic_sweep())[1][4] == th_findings.SUPPORTED
    # no neuron aligned at the largest n (cosines of 0.3 only with m > n // 4 at every n)
    flat = synthetic_sweep(grid=(4, 8, 16, 32), m=6, align_threshold=0.995)
    assert th_findings.findings_rows(flat)[1][4] == th_findings.NOT_SUPPORTED
    # the train loss of the non-interpolating runs (1.2 -> 0.25) never falls by 85 %: at the largest n there is
    # no early phase, so no alignment is measured there
    never = synthetic_sweep(early_loss_drop=0.85)
    assert np.isnan(never.aligned_fraction.values[2:]).all() and np.isfinite(never.aligned_fraction.values[:2]).all()
    assert th_findings.findings_rows(never)[1][4] == th_findings.INCONCLUSIVE


def test_findings_fragment_has_six_columns():
    rows = th_findings.findings_rows(synthetic_sweep())
    text = th_findings.findings_fragment("tiny", rows)
    assert text.count("\n| T") == 2 and "**supported**" in text
    header, rule, *body = [line for line in text.splitlines() if line.startswith("|")]
    assert header == "| # | claim | the paper says | measured | criterion | verdict |"
    for line in [rule, *body]:
        assert line.count("|") == 7, line  # six cells: no stray pipe inside a cell


def test_threshold_rows_merge_into_findings_md():
    from ddscope.findings import findings_markdown, table_rows

    fragment = th_findings.findings_fragment("tiny", th_findings.findings_rows(synthetic_sweep()))
    extra = table_rows(fragment)
    assert [row[:6] for row in extra] == ["| T1 |", "| T2 |"]  # header and rule are not rows
    merged = findings_markdown("tiny", [("claim", "source", "measured", "criterion", th_findings.NOT_SUPPORTED)],
                               extra, "both")
    rows = [line for line in merged.splitlines() if line.startswith("| ") and not line.startswith("| # ")]
    assert [row[:6] for row in rows] == ["| 1 | ", "| T1 |", "| T2 |"]
    assert "from both;" in merged


def test_figures_render(tmp_path):
    ds = synthetic_sweep()
    for name, plot in PLOTS.items():
        path = save_figure(plot(ds, band="minmax"), tmp_path / f"{name}.png", dpi=40)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    never = synthetic_sweep(interpolating_n=(4, 8, 16, 32))
    save_figure(PLOTS["loss"](never, band="sem"), tmp_path / "never.png", dpi=40)


def test_seed_band():
    v = np.array([[1.0, 3.0], [2.0, np.nan]])
    mean, lo, hi = seed_band(v, "std")
    np.testing.assert_allclose(mean, [2.0, 2.0])
    np.testing.assert_allclose(hi - mean, [math.sqrt(2), 0.0])
    mean, lo, hi = seed_band(v, "minmax")
    np.testing.assert_allclose(lo, [1.0, 2.0])
    with pytest.raises(ValueError):
        seed_band(v, "iqr")


def test_run_dataset_roundtrips_through_netcdf(tmp_path):
    ds = synthetic_sweep()
    write_netcdf(ds, tmp_path / "sweep.nc")
    with xr.open_dataset(tmp_path / "sweep.nc", engine="h5netcdf") as back:
        back = back.load()
    assert back.interpolates.dtype == bool
    xr.testing.assert_allclose(back.final_test_loss, ds.final_test_loss)
    assert float(back.n_threshold) == 16
