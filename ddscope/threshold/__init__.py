"""Optimization threshold of a small-init two-layer ReLU student of a teacher (Boursier & Flammarion).

Setting. Inputs x ~ N(0, I_d). The teacher is either linear, f*(x) = β·x with |β| = 1, or a two-layer ReLU
network f*(x) = s Σ_k c_k relu(v_k·x) with unit v_k, signs c_k = ±1 and s chosen so that E[f*(x)²] = 1
(exactly, from the arc-cosine kernel). Labels y = f*(x) + ε, ε ~ N(0, noise_var). The student is
f(x) = Σ_j a_j relu(w_j·x) of width m, no biases, with a small balanced initialisation: every neuron starts
with |w_j| = |a_j| = init_scale, w_j uniform on the sphere, sign(a_j) = ±1 at random. It is trained on the
mean squared error (1/n) Σ_i (f(x_i) − y_i)² by full-batch gradient descent (or Adam) for a fixed number of
steps. Losses reported are that MSE on the training set (noisy labels) and the test loss
(1/n_test) Σ (f(x) − f*(x))² on a fixed test set against the noiseless teacher, i.e. the excess risk
(add noise_var for the expected loss on noisy test labels).

Seeds. `seed` (the study's) draws the teacher and the test set; a run seed s draws one pool of training
inputs and label noise and the student's initialisation. The training set of size n is the first n samples of
the pool of seed s (nested over n), and every n starts from the same initial student for that s.

Early alignment. The teacher directions are ±β for the linear teacher (neurons with a_j > 0 align with β,
those with a_j < 0 with −β) and the v_k for a ReLU teacher. A neuron's alignment is its largest cosine with a
teacher direction, max_k cos(w_j, u_k) in [−1, 1]. The early phase ends at the first recorded step at which the
training loss has fallen by `early_loss_drop` (a fraction) below its initial value: until then neuron norms stay
near init_scale and only directions move. `aligned_fraction` is the fraction of neurons whose alignment is at
least `align_threshold` then (a neuron with w_j = 0 has no direction and counts as not aligned).

Optimization threshold. A run interpolates when its final training loss is below
`interpolation_tol` · noise_var. A grid point n interpolates when at least `majority` of its seeds do. The
estimated threshold is the smallest n of the grid from which on no larger grid point interpolates, i.e. the grid
point after the largest interpolating one (isolated non-interpolating points below it are treated as noise:
the threshold is where interpolation stops for good). If the largest n still interpolates, the threshold is
beyond the grid: +inf. If no n interpolates, it is the smallest n (the threshold is at most n_min); use
`threshold_bracketed` to tell these apart.

Nothing here imports torch, xarray or h5py at module level: the Snakefile imports this module (for the n grid)
at parse time.
"""
