"""Run by test_sharding.py in a subprocess with 8 simulated CPU devices: explicit-mesh runs of
the losses whose code has explicit-sharding paths, fit on an explicit mesh, and the one-line
errors that need several devices. Prints one JSON object."""
import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh

import lossjax as lj

assert jax.device_count() == 8, jax.device_count()
out = {}
explicit = Mesh(np.asarray(jax.devices()), ("batch",), axis_types=(AxisType.Explicit,))
auto = lj.sharding.batch_mesh()

# explicit mesh: gathers by label, all-pairs losses, the fused cross-entropy (split detected
# from the types), each vs the same call on one device
for name in ("cross_entropy", "softmax_focal_loss", "center_loss", "ntxent", "mined_triplet",
             "linear_cross_entropy"):
    loss = lj.get(name)
    s = loss.sample(jax.random.PRNGKey(1), batch=16)
    static = {k: v for k, v in s.kwargs.items() if not hasattr(v, "shape")}
    dynamic = {k: v for k, v in s.kwargs.items() if hasattr(v, "shape")}
    f = jax.jit(lambda args, kw: jax.value_and_grad(
        lambda x: loss(x, *args[1:], **kw, **static))(args[0]))
    ref = f(s.args, dynamic)
    args, kwargs = lj.sharding.shard_inputs(loss, explicit, *s.args, **dynamic)
    got = f(args, kwargs)
    out[name] = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                    for a, b in zip(got, ref))

# fit on an explicit mesh, minibatches
ds = lj.data.linear_regression(jax.random.PRNGKey(0), 64, 3)
data = {"x": ds.data["x"], "y": ds.data["y"]}


def mse(p, batch):
    return lj.mse(batch["x"] @ p["w"] + p["b"], batch["y"])


p0 = {"w": jnp.zeros(3), "b": jnp.zeros(())}
one = lj.train.fit(mse, p0, data, "adam", 20, batch_size=16)
many = lj.train.fit(mse, p0, data, "adam", 20, batch_size=16, mesh=explicit)
out["fit_explicit"] = float(np.max(np.abs(many.history.numpy()["loss"]
                                          / one.history.numpy()["loss"] - 1)))
out["fit_explicit_params_spec"] = str(many.params["w"].sharding.spec)


def error(fn):
    try:
        fn()
    except (ValueError, TypeError) as e:
        return str(e)
    return None


x = jnp.ones((12, 5))
out["errors"] = {
    "shard_batch": error(lambda: lj.sharding.shard_batch({"x": x}, auto)),
    "shard_inputs": error(lambda: lj.sharding.shard_inputs(lj.mse, auto, x, x)),
    "fit_batch_size": error(lambda: lj.train.fit(mse, p0, data, "sgd", 2, batch_size=12,
                                                 mesh=auto)),
    "fit_examples": error(lambda: lj.train.fit(
        mse, p0, {"x": data["x"][:60], "y": data["y"][:60]}, "sgd", 2, mesh=auto)),
    "vocab_divisible": error(lambda: lj.linear_cross_entropy(
        jnp.ones((8, 4)), jnp.ones((4, 10)), jnp.zeros(8, jnp.int32), mesh=auto,
        vocab_axis="batch")),
    "vocab_axis_unknown": error(lambda: lj.linear_cross_entropy(
        jnp.ones((8, 4)), jnp.ones((4, 16)), jnp.zeros(8, jnp.int32), mesh=auto,
        vocab_axis="model")),
    "same_axes": error(lambda: lj.linear_cross_entropy(
        jnp.ones((8, 4)), jnp.ones((4, 16)), jnp.zeros(8, jnp.int32), mesh=auto,
        token_axis="batch", vocab_axis="batch")),
}
print(json.dumps(out))
