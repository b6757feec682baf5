"""lj.train: the scan loop equals a plain Python loop of optax updates, minibatches cover each
epoch, non-finite steps are caught, fit_many equals separate fits."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lossjax as lj

_rng = np.random.default_rng(3)
X = jnp.asarray(_rng.normal(size=(24, 3)))
Y = X @ jnp.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * jnp.asarray(_rng.normal(size=24))
DATA = {"x": X, "y": Y}
P0 = {"w": jnp.zeros(3), "b": jnp.zeros(())}


def linear_loss(p, batch, delta=1.0):
    return lj.huber(batch["x"] @ p["w"] + p["b"], batch["y"], delta=delta)


def test_fit_equals_a_python_loop_of_optax_updates():
    tx = lj.optim.make("momentum", learning_rate=0.05)
    result = lj.train.fit(linear_loss, P0, DATA, tx, 40)
    p, state, losses, gnorms, unorms = P0, tx.init(P0), [], [], []
    for _ in range(40):
        value, g = jax.value_and_grad(linear_loss)(p, DATA)
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
        losses.append(value)
        gnorms.append(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree_util.tree_leaves(g))))
        unorms.append(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree_util.tree_leaves(u))))
    h = result.history.numpy()
    np.testing.assert_allclose(h["loss"], losses, rtol=1e-12)
    np.testing.assert_allclose(h["grad_norm"], gnorms, rtol=1e-12)
    np.testing.assert_allclose(h["update_norm"], unorms, rtol=1e-12)
    chex.assert_trees_all_close(result.params, p, rtol=1e-12)
    assert result.ok and int(result.stopped_at) == -1
    assert isinstance(result.history.loss, jax.Array)          # on device until asked for


def test_minibatches_visit_every_example_once_per_epoch():
    """loss = -Σ_batch counts[i]: plain SGD with learning rate 1 adds one to the count of each
    example drawn, so after E epochs of n/B steps every count is E."""
    n, b, epochs = 12, 4, 3
    data = {"i": jnp.arange(n)}
    loss = lambda counts, batch: -jnp.sum(counts[batch["i"]])
    result = lj.train.fit(loss, jnp.zeros(n), data, lj.optim.make("sgd", learning_rate=1.0),
                          epochs * n // b, batch_size=b, key=jax.random.PRNGKey(5))
    np.testing.assert_array_equal(result.params, np.full(n, epochs))
    # different epochs use different orders: the per-step losses are the running counts
    again = lj.train.fit(loss, jnp.zeros(n), data, lj.optim.make("sgd", learning_rate=1.0),
                         epochs * n // b, batch_size=b, key=jax.random.PRNGKey(5))
    np.testing.assert_array_equal(result.history.loss, again.history.loss)   # reproducible


def test_line_search_optimizers_train_on_minibatches():
    result = lj.train.fit(linear_loss, P0, DATA, "lbfgs", 30, batch_size=8)
    h = result.history.numpy()["loss"]
    assert result.ok and h[-5:].mean() < 0.1 * h[0]


def test_fit_stops_at_a_diverging_learning_rate():
    """SGD on ½·10·x² with learning rate 0.5 multiplies x by -4 per step: float32 overflows
    after about log(3.4e38)/log(16) ≈ 32 steps. fit raises, naming the step; the parameters
    it keeps are the last finite ones."""
    f = lambda x: 5.0 * jnp.sum(x ** 2)
    x0 = jnp.ones(2, jnp.float32)
    tx = lj.optim.make("sgd", learning_rate=0.5)
    with pytest.raises(lj.train.NonFiniteLoss, match=r"non-finite at step \d+ of 200") as err:
        lj.train.fit(f, x0, None, tx, 200)
    result = err.value.result
    at = int(result.stopped_at)
    expected = int(np.ceil(np.log(3.4e38 / 10) / np.log(16)))     # first step with loss = inf
    assert abs(at - expected) <= 1
    h = result.history.numpy()
    assert np.all(np.isfinite(h["loss"][:at])) and not np.isfinite(h["loss"][at])
    assert np.all(np.isnan(h["loss"][at + 1:]))
    assert np.all(np.isfinite(result.params))
    np.testing.assert_allclose(np.abs(result.params), 4.0 ** at, rtol=1e-6)
    stopped = lj.train.fit(f, x0, None, tx, 200, on_nonfinite="stop")
    assert not stopped.ok and int(stopped.stopped_at) == at


# --- fit_many --------------------------------------------------------------------------------
def test_fit_many_equals_separate_fits_over_learning_rates():
    lrs = jnp.array([0.01, 0.03, 0.1, 0.3])
    sweep = lj.train.fit_many(linear_loss, P0, DATA, "sgd", 30,
                              hparams={"learning_rate": lrs})
    assert sweep.history.loss.shape == (4, 30)
    for i, lr in enumerate(lrs):
        one = lj.train.fit(linear_loss, P0, DATA, lj.optim.make("sgd", learning_rate=float(lr)),
                           30)
        np.testing.assert_allclose(sweep.history.loss[i], one.history.loss, rtol=1e-12)
        np.testing.assert_allclose(sweep.run(i).params["w"], one.params["w"], rtol=1e-12)


def test_fit_many_over_loss_hyperparameters_keys_and_initialisations():
    deltas = jnp.array([0.1, 1.0, 3.0])
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    inits = {"w": jnp.asarray(_rng.normal(size=(3, 3))), "b": jnp.zeros(3)}
    factory = functools.partial(lj.optim.make, "momentum", momentum=0.5)
    sweep = lj.train.fit_many(linear_loss, inits, DATA, factory, 25,
                              hparams={"learning_rate": jnp.array([0.05, 0.1, 0.2])},
                              loss_hparams={"delta": deltas}, keys=keys, batched_params=True,
                              batch_size=8)
    for i in range(3):
        p0 = jax.tree_util.tree_map(lambda x: x[i], inits)
        one = lj.train.fit(linear_loss, p0, DATA,
                           factory(learning_rate=float([0.05, 0.1, 0.2][i])), 25,
                           batch_size=8, key=keys[i], loss_kwargs={"delta": deltas[i]})
        np.testing.assert_allclose(sweep.history.loss[i], one.history.loss, rtol=1e-12)


def test_fit_many_stops_diverging_runs_only():
    f = lambda x: 5.0 * jnp.sum(x ** 2)
    sweep = lj.train.fit_many(f, jnp.ones(2, jnp.float32), None, "sgd", 100,
                              hparams={"learning_rate": jnp.array([0.05, 0.5], jnp.float32)})
    np.testing.assert_array_equal(sweep.ok, [True, False])
    assert "run 1 (learning_rate=0.5): non-finite at step" in sweep.report()


def test_fit_many_takes_python_lists_and_reports_each_runs_values():
    as_lists = lj.train.fit_many(linear_loss, P0, DATA, "sgd", 20,
                                 hparams={"learning_rate": [0.01, 0.1]},
                                 loss_hparams={"delta": (0.5, 2.0)})
    as_arrays = lj.train.fit_many(linear_loss, P0, DATA, "sgd", 20,
                                  hparams={"learning_rate": jnp.array([0.01, 0.1])},
                                  loss_hparams={"delta": jnp.array([0.5, 2.0])})
    np.testing.assert_array_equal(as_lists.history.loss, as_arrays.history.loss)
    lines = as_lists.report().splitlines()
    assert lines[0].startswith("run 0 (learning_rate=0.01, delta=0.5): 20 steps, final loss")
    assert lines[1].startswith("run 1 (learning_rate=0.1, delta=2): 20 steps")
    assert float(as_lists.run(1).swept["delta"]) == 2.0
    with pytest.raises(TypeError, match=r"`hparams\['learning_rate'\]` must be an array or a "
                                        r"list of numbers"):
        lj.train.fit_many(linear_loss, P0, DATA, "sgd", 20, hparams={"learning_rate": ["a"]})


def test_results_and_histories_print_in_one_short_line():
    one = lj.train.fit(linear_loss, P0, DATA, "adam", 500)
    final = float(one.history.loss[-1])
    assert repr(one) == (f"FitResult(500 steps, final loss {final:.4g}, ok; params "   # x64
                         f"{{b: float64[], w: float64[3]}})")
    assert repr(one.history).startswith(f"History(500 steps; loss {float(one.history.loss[0]):.4g}"
                                        f" → {final:.4g}, grad_norm")
    sweep = lj.train.fit_many(linear_loss, P0, DATA, "sgd", 300,
                              hparams={"learning_rate": [0.01, 0.1, 0.3]})
    text = repr(sweep)
    assert text.startswith("FitResult(3 runs × 300 steps, swept: learning_rate; final loss ")
    assert len(text) < 200 and len(repr(sweep.history)) < 120 and "\n" not in text


@pytest.mark.parametrize("case, cause", [("inputs", "inputs"), ("log0", "start"),
                                         ("lr", "diverged")])
def test_nonfinite_loss_says_whether_the_inputs_or_the_optimiser_went_wrong(case, cause):
    f = lambda x: 5.0 * jnp.sum(x ** 2)
    x0, tx = jnp.ones(2, jnp.float32), lj.optim.make("sgd", learning_rate=0.01)
    if case == "inputs":
        x0 = x0.at[1].set(jnp.nan)
    elif case == "log0":
        f = lambda x: -jnp.sum(jnp.log(x))                      # log 0 at the start
        x0 = jnp.zeros(2, jnp.float32)
    else:
        tx = lj.optim.make("sgd", learning_rate=0.5)             # x ← -4x per step
    with pytest.raises(lj.train.NonFiniteLoss) as err:
        lj.train.fit(f, x0, None, tx, 200)
    assert err.value.cause == cause
    message = str(err.value)
    assert {"inputs": "The inputs were already non-finite: params (1 of 2 entries)",
            "start": "The inputs are finite but the loss or its gradient is not",
            "diverged": "The optimiser diverged: the loss was finite for steps 0-"}[cause] \
        in message


# --- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "`steps` must be a positive int"),
    ({"batch_size": 100}, r"`batch_size` must be an int in \[1, 24\]"),
    ({"optimizer": 3}, "`optimizer` must be an lj.optim name"),
    ({"optimizer": "adamm"}, "Did you mean 'adam'"),
    ({"data": {"x": X, "y": Y[:5]}}, "share its leading"),
    ({"loss_fn": lambda p, b: b["x"] @ p["w"]}, r"must return a floating-point scalar, got "
                                                r"float64\[24\]"),
    ({"on_nonfinite": "ignore"}, "on_nonfinite"),
])
def test_fit_refuses_bad_input(kwargs, match):
    args = {"loss_fn": linear_loss, "params": P0, "data": DATA, "optimizer": "sgd", "steps": 5}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        lj.train.fit(**args)


def test_fit_many_refuses_mismatched_runs():
    with pytest.raises(ValueError, match="disagree on the number of runs"):
        lj.train.fit_many(linear_loss, P0, DATA, "sgd", 5,
                          hparams={"learning_rate": jnp.ones(3)},
                          loss_hparams={"delta": jnp.ones(2)})
    with pytest.raises(ValueError, match="nothing to sweep"):
        lj.train.fit_many(linear_loss, P0, DATA, "sgd", 5)


def test_fit_and_fit_many_compile_once_per_signature_and_never_retrace_on_new_values():
    """The loss is traced three times: to check that it returns a scalar, and as fit's and
    fit_many's programs compile; new data, initial parameters and swept values of the same
    shapes reuse all three (chex.assert_max_traces raises on any further trace)."""
    chex.clear_trace_counter()
    counted = chex.assert_max_traces(linear_loss, n=3)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        data = {"x": jnp.asarray(rng.normal(size=(24, 3))), "y": jnp.asarray(rng.normal(size=24))}
        p0 = {"w": jnp.asarray(rng.normal(size=3)), "b": jnp.zeros(())}
        lj.train.fit(counted, p0, data, "adam", 5)
        lj.train.fit_many(counted, p0, data, "sgd", 5,
                          hparams={"learning_rate": jnp.asarray(rng.uniform(0.01, 0.1, 4))})
    chex.clear_trace_counter()
