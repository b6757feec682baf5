"""Scale-out on a device mesh, in this test session's 8 simulated CPU devices (conftest.py
starts JAX with XLA_FLAGS=--xla_force_host_platform_device_count=8): the scale_out
experiment's measurements for a representative loss of every family (the lab sweeps all the
catalogue), fit / fit_many data-parallel, the vocabulary-parallel fused cross-entropy and its
compiled buffers, explicit meshes and the error messages; and one real multi-process run
(two processes of four devices joined by jax.distributed)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh

import lossjax as lj
from _experiments import EXPERIMENTS, check_figure
from lossjax.lab import Config, collect_figures

ROUND_OFF = 1e-5          # relative; float32 eps is 1.2e-7 and the sums here are short
SCALE_OUT = EXPERIMENTS.module("scale_out")
# a loss of every family, where possible one whose elements couple the batch (class-weighted
# means, all-pairs similarities, in-batch mining, per-example sums, padded sequences, the
# fused vocabulary)
REPRESENTATIVES = ("gaussian_nll", "cross_entropy", "ntxent", "mined_triplet", "dice", "ctc",
                   "adaptive_robust", "hinge_discriminator", "uncertainty_weighting",
                   "linear_cross_entropy")


@pytest.fixture(scope="module")
def meshes():
    assert jax.device_count() == 8, jax.device_count()
    return {"auto": lj.sharding.batch_mesh(),
            "explicit": Mesh(np.asarray(jax.devices()), ("batch",),
                             axis_types=(AxisType.Explicit,))}


@pytest.fixture(autouse=True)
def float32():
    with jax.enable_x64(False):           # as the lab and users run it
        yield


def test_representatives_cover_every_family():
    families = {lj.get(name).family for name in REPRESENTATIVES}
    assert families == {loss.family for loss in lj.catalog()}


def test_a_loss_of_every_family_is_unchanged_by_sharding_the_batch(meshes, tmp_path):
    rows = SCALE_OUT.catalogue(meshes, seed=0, batch=16, losses=REPRESENTATIVES)
    assert set(rows) == set(REPRESENTATIVES)
    for name, row in rows.items():
        assert set(row) == {"auto", "explicit"}
        assert max(row.values()) <= ROUND_OFF, (name, row)
    with collect_figures() as figures:                   # the lab's figure of these numbers
        SCALE_OUT.catalogue_figure(Config(out=tmp_path), rows, jax.device_count())
    (file, fig), = figures
    check_figure(f"scale_out/{file}", fig)


def test_fit_and_fit_many_data_parallel_give_the_single_device_history(meshes):
    rows = {r["run"]: r for r in SCALE_OUT.training(meshes["auto"], seed=0, steps=30)}
    assert any(run.startswith("fit_many") for run in rows)
    assert any("split over 'model'" in run for run in rows)
    for run, r in rows.items():
        if r["line_search"]:
            # L-BFGS: the loss curve agrees; the line search amplifies round-off late on
            assert r["loss"] <= 1e-4, r
        else:
            assert max(r["loss"], r["grad_norm"], r["update_norm"], r["params"]) <= ROUND_OFF, r


def test_vocabulary_parallel_cross_entropy_keeps_the_vocabulary_split():
    vp = SCALE_OUT.vocab_parallel(jax.devices(), seed=0, sizes=(64, 32, 1000))
    parallel, gspmd = vp["rows"]
    assert parallel["relative_difference"] <= ROUND_OFF
    assert parallel["full_vocabulary_buffers"] == 0
    assert parallel["largest_buffer_elements"] <= vp["weight_shard_elements"]
    assert parallel["largest_buffer_elements"] < vp["full_logits_elements"] / 4
    assert parallel["gradient_shardings"] == ["P('data', None)", "P(None, 'model')",
                                              "P('model',)"]
    # the detector sees full-vocabulary buffers when they are there: GSPMD alone gathers W
    assert gspmd["full_vocabulary_buffers"] > 0
    assert gspmd["relative_difference"] <= ROUND_OFF


@pytest.mark.slow
def test_several_processes_joined_by_jax_distributed_match_one_device():
    """The one test that starts processes: 2 × 4 CPU devices, gloo collectives."""
    mp = SCALE_OUT.multi_process(seed=0)
    assert mp["ran"], mp.get("why")
    assert (mp["processes"], mp["local_devices"], mp["devices"]) == (2, 4, 8)
    assert set(mp["losses"]) == {"cross_entropy", "ntxent", "linear_cross_entropy"}
    assert max(*mp["losses"].values(), mp["fit"]) <= ROUND_OFF, mp


@pytest.mark.parametrize("name", ["cross_entropy", "softmax_focal_loss", "center_loss",
                                  "ntxent", "mined_triplet", "linear_cross_entropy"])
def test_explicit_meshes(name, meshes):
    """Gathers by label, all-pairs losses and the fused cross-entropy (its split read from
    the types) under an explicit mesh, against the same call on one device."""
    loss = lj.get(name)
    s = loss.sample(jax.random.PRNGKey(1), batch=16)
    static = {k: v for k, v in s.kwargs.items() if not hasattr(v, "shape")}
    dynamic = {k: v for k, v in s.kwargs.items() if hasattr(v, "shape")}
    f = jax.jit(lambda args, kw: jax.value_and_grad(
        lambda x: loss(x, *args[1:], **kw, **static))(args[0]))
    want = f(s.args, dynamic)
    args, kwargs = lj.sharding.shard_inputs(loss, meshes["explicit"], *s.args, **dynamic)
    got = f(args, kwargs)
    for a, b in zip(got, want):
        assert float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) <= ROUND_OFF


def _mse(p, batch):
    return lj.mse(batch["x"] @ p["w"] + p["b"], batch["y"])


@pytest.fixture
def regression(float32):
    ds = lj.data.linear_regression(jax.random.PRNGKey(0), 64, 3)
    return {"x": ds.data["x"], "y": ds.data["y"]}, {"w": jnp.zeros(3), "b": jnp.zeros(())}


def test_fit_on_an_explicit_mesh(meshes, regression):
    data, p0 = regression
    one = lj.train.fit(_mse, p0, data, "adam", 20, batch_size=16)
    many = lj.train.fit(_mse, p0, data, "adam", 20, batch_size=16, mesh=meshes["explicit"])
    np.testing.assert_allclose(many.history.numpy()["loss"], one.history.numpy()["loss"],
                               rtol=ROUND_OFF)
    assert many.params["w"].sharding.is_fully_replicated       # parameters stay replicated


def test_errors_name_the_argument_and_the_device_count(meshes, regression):
    data, p0 = regression
    auto, x = meshes["auto"], jnp.ones((12, 5))
    cases = [
        (lambda: lj.sharding.shard_batch({"x": x}, auto),
         r"`tree\['x'\]` has shape \(12, 5\).*8 devices"),
        (lambda: lj.sharding.shard_inputs(lj.mse, auto, x, x), r"`predictions` has shape \(12, 5\)"),
        (lambda: lj.train.fit(_mse, p0, data, "sgd", 2, batch_size=12, mesh=auto),
         "`batch_size` = 12 must be divisible by the 8 devices"),
        (lambda: lj.train.fit(_mse, p0, {"x": data["x"][:60], "y": data["y"][:60]}, "sgd", 2,
                              mesh=auto), r"`data\['x'\]` has shape \(60, 3\)"),
        (lambda: lj.linear_cross_entropy(jnp.ones((8, 4)), jnp.ones((4, 10)),
                                         jnp.zeros(8, jnp.int32), mesh=auto, vocab_axis="batch"),
         "V = 10 is not divisible by the 8 devices"),
        (lambda: lj.linear_cross_entropy(jnp.ones((8, 4)), jnp.ones((4, 16)),
                                         jnp.zeros(8, jnp.int32), mesh=auto, vocab_axis="model"),
         r"`vocab_axis` must be one of the mesh axes \('batch',\)"),
        (lambda: lj.linear_cross_entropy(jnp.ones((8, 4)), jnp.ones((4, 16)),
                                         jnp.zeros(8, jnp.int32), mesh=auto, token_axis="batch",
                                         vocab_axis="batch"), "different mesh axes"),
    ]
    for call, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            call()
# -- single-device checks ---------------------------------------------------------------------

def test_sample_batch_stacks_draws_of_the_batch_arguments():
    key = jax.random.PRNGKey(3)
    one = lj.center_loss.sample(key)
    big = lj.center_loss.sample(key, batch=16)
    features, labels, centers = big.args
    assert features.shape == (16, 3) and labels.shape == (16,)
    assert np.array_equal(features[:6], one.args[0])           # the first draw comes first
    assert np.array_equal(centers, one.args[2])                # not a batch argument
    ctc = lj.ctc.sample(key, batch=5)
    assert ctc.kwargs["logit_paddings"].shape == (5, 6)
    with pytest.raises(ValueError, match="`batch` must be a positive int"):
        lj.mse.sample(key, batch=0)


def test_one_device_mesh_and_bad_arguments():
    mesh = lj.sharding.batch_mesh(jax.devices()[:1])
    x = jnp.arange(12.0).reshape(6, 2)
    args, _ = lj.sharding.shard_inputs(lj.mse, mesh, x, x + 1)
    assert float(lj.mse(*args)) == 1.0
    with pytest.raises(ValueError, match="mesh axis 'model' is not in the mesh"):
        lj.sharding.shard_batch(x, mesh, "model")
    with pytest.raises(TypeError, match="`mesh` must be a jax.sharding.Mesh"):
        lj.sharding.shard_batch(x, "cpu")
    with pytest.raises(ValueError, match="`batch_axis`/`param_specs` need `mesh`"):
        lj.train.fit(lambda p, b: jnp.sum(p * b), jnp.ones(2), x, "sgd", 1, batch_axis="batch")
    with pytest.raises(ValueError, match="`token_axis`/`vocab_axis` need `mesh`"):
        lj.linear_cross_entropy(x, jnp.ones((2, 3)), jnp.zeros(6, jnp.int32), vocab_axis="v")
