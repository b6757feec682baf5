"""lj.train with models as given: an equinox module and a flax.nnx module (fixed leaves such
as activation functions, sizes, RNG keys held static) train through fit and fit_many, and
equal a plain Python loop of optax updates on the models' own split into trained arrays and
the rest (eqx.partition, nnx.split)."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lossjax as lj

X = jax.random.normal(jax.random.PRNGKey(1), (32, 3))
DATA = {"x": X, "y": jnp.sin(X[:, :1])}
STEPS = 25


def eqx_loss(model, batch):
    return lj.mse(jax.vmap(model)(batch["x"]), batch["y"])


class Net(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(3, 8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)        # RNG state: held fixed, not trained

    def __call__(self, x):
        return self.out(jax.nn.tanh(self.hidden(x)))


def nnx_loss(model, batch):
    return lj.mse(model(batch["x"]), batch["y"])


def reference_losses(loss, model, split, merge):
    """A Python loop of Adam on the model's own trainable part."""
    trained, rest = split(model)
    tx = optax.adam(1e-3)
    state, out = tx.init(trained), []
    for _ in range(STEPS):
        value, g = jax.value_and_grad(lambda t: loss(merge(t, rest), DATA))(trained)
        updates, state = tx.update(g, state, trained)
        trained = optax.apply_updates(trained, updates)
        out.append(float(value))
    return np.array(out), merge(trained, rest)


def test_an_equinox_module_trains_as_given():
    model = eqx.nn.MLP(3, 1, 8, 2, key=jax.random.PRNGKey(0))     # activation: a custom_jvp
    result = lj.train.fit(eqx_loss, model, DATA, "adam", STEPS)
    want, trained = reference_losses(
        eqx_loss, model, lambda m: eqx.partition(m, eqx.is_inexact_array),
        lambda t, r: eqx.combine(t, r))
    np.testing.assert_allclose(result.history.loss, want, rtol=1e-10)
    assert isinstance(result.params, eqx.nn.MLP)
    assert result.params.activation is model.activation
    np.testing.assert_allclose(result.params.layers[0].weight, trained.layers[0].weight,
                               rtol=1e-10)
    assert "MLP with 6 arrays" in repr(result)


def test_a_flax_nnx_module_trains_as_given():
    model = Net(nnx.Rngs(0))
    result = lj.train.fit(nnx_loss, model, DATA, "adam", STEPS)

    def split(m):
        graph, params, rest = nnx.split(m, nnx.Param, ...)
        return params, (graph, rest)
    want, trained = reference_losses(nnx_loss, model, split,
                                     lambda t, r: nnx.merge(r[0], t, r[1]))
    # flax keeps float32 parameters under x64: jitted and eager steps agree to float32
    np.testing.assert_allclose(result.history.loss, want, rtol=1e-6)
    assert isinstance(result.params, Net)
    np.testing.assert_allclose(result.params.hidden.kernel[...],
                               trained.hidden.kernel[...], rtol=1e-5, atol=1e-7)


def test_fit_many_sweeps_and_stacks_modules():
    model = eqx.nn.MLP(3, 1, 8, 2, key=jax.random.PRNGKey(0))
    sweep = lj.train.fit_many(eqx_loss, model, DATA, "sgd", 10,
                              hparams={"learning_rate": [0.01, 0.1]})
    for i, lr in enumerate((0.01, 0.1)):
        one = lj.train.fit(eqx_loss, model, DATA, lj.optim.make("sgd", learning_rate=lr), 10)
        np.testing.assert_allclose(sweep.history.loss[i], one.history.loss, rtol=1e-10)
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    stacked = eqx.filter_vmap(lambda k: eqx.nn.MLP(3, 1, 8, 2, key=k))(keys)
    seeds = lj.train.fit_many(eqx_loss, stacked, DATA, "adam", 10, batched_params=True)
    assert seeds.params.layers[0].weight.shape == (3, 8, 3) and seeds.ok.all()
    first = lj.train.fit(eqx_loss, eqx.nn.MLP(3, 1, 8, 2, key=keys[0]), DATA, "adam", 10)
    np.testing.assert_allclose(seeds.history.loss[0], first.history.loss, rtol=1e-10)


def test_models_without_trainable_arrays_or_with_param_specs_are_refused():
    with pytest.raises(ValueError, match="`params` has no floating-point arrays to train"):
        lj.train.fit(lambda p, b: jnp.sum(b["x"]), {"f": jnp.tanh}, DATA, "sgd", 2)
    mesh = lj.sharding.batch_mesh()
    with pytest.raises(ValueError, match="`param_specs` need `params` whose leaves are all"):
        lj.train.fit(eqx_loss, eqx.nn.MLP(3, 1, 8, 2, key=jax.random.PRNGKey(0)), DATA,
                     "sgd", 2, mesh=mesh, param_specs={})
