"""Scale-out on a device mesh. The multi-device checks run in subprocesses with 8 simulated
CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8): the lab's scale_out
experiment (every catalogue loss, fit / fit_many, the vocabulary-parallel fused
cross-entropy and its compiled buffers, two processes joined by jax.distributed) and
tests/_mesh_script.py (explicit meshes, errors)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj
from _experiments import quick

ROUND_OFF = 1e-5          # relative; float32 eps is 1.2e-7 and the sums here are short


@pytest.fixture(scope="module")
def scale_out(tmp_path_factory):
    return quick("scale_out", tmp_path_factory.mktemp("scale_out"))


@pytest.fixture(scope="module")
def mesh_script():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env.pop("JAX_ENABLE_X64", None)
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("_mesh_script.py"))],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_catalogue_loss_is_unchanged_by_sharding_the_batch(scale_out):
    m = scale_out.metrics
    assert m["devices"] == 8
    assert set(m["catalogue"]) == {loss.name for loss in lj.catalog()}
    for name, row in m["catalogue"].items():
        assert row["auto"] <= ROUND_OFF, (name, row)
    assert m["failing"] == []


def test_fit_and_fit_many_data_parallel_give_the_single_device_history(scale_out):
    rows = {r["run"]: r for r in scale_out.metrics["training"]}
    assert any(run.startswith("fit_many") for run in rows)
    assert any("split over 'model'" in run for run in rows)
    for run, r in rows.items():
        if r["line_search"]:
            # L-BFGS: the loss curve agrees; the line search amplifies round-off late on
            assert r["loss"] <= 1e-4, r
        else:
            assert max(r["loss"], r["grad_norm"], r["update_norm"], r["params"]) <= ROUND_OFF, r


def test_vocabulary_parallel_cross_entropy_keeps_the_vocabulary_split(scale_out):
    vp = scale_out.metrics["vocab_parallel"]
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
    assert scale_out.verdict == "holds"


def test_several_processes_joined_by_jax_distributed_match_one_device(scale_out):
    mp = scale_out.metrics["multi_process"]
    assert mp["ran"], mp.get("why")
    assert (mp["processes"], mp["local_devices"], mp["devices"]) == (2, 4, 8)
    assert set(mp["losses"]) == {"cross_entropy", "ntxent", "linear_cross_entropy"}
    assert max(*mp["losses"].values(), mp["fit"]) <= ROUND_OFF, mp


def test_explicit_meshes(mesh_script):
    for name in ("cross_entropy", "softmax_focal_loss", "center_loss", "ntxent",
                 "mined_triplet", "linear_cross_entropy"):
        assert mesh_script[name] <= ROUND_OFF, (name, mesh_script[name])
    assert mesh_script["fit_explicit"] <= ROUND_OFF


def test_errors_name_the_argument_and_the_device_count(mesh_script):
    e = mesh_script["errors"]
    assert "`tree['x']` has shape (12, 5)" in e["shard_batch"] and "8 devices" in e["shard_batch"]
    assert "`predictions` has shape (12, 5)" in e["shard_inputs"]
    assert "`batch_size` = 12 must be divisible by the 8 devices" in e["fit_batch_size"]
    assert "`data['x']` has shape (60, 3)" in e["fit_examples"]
    assert "V = 10 is not divisible by the 8 devices" in e["vocab_divisible"]
    assert "`vocab_axis` must be one of the mesh axes ('batch',)" in e["vocab_axis_unknown"]
    assert "different mesh axes" in e["same_axes"]


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
