import jax

# Tests compare in float64; float32/16 cases pass explicit dtypes.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

import lossjax as lj  # noqa: E402

CATALOG = lj.catalog()
NAMES = [loss.name for loss in CATALOG]
GRAD_NAMES = [loss.name for loss in CATALOG if loss.has_grad]   # ctc: autodiff only


@pytest.fixture(params=NAMES)
def loss(request):
    return lj.get(request.param)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


def sample(loss, kind="generic", dtype=jnp.float64, seed=0):
    return loss.sample(jax.random.PRNGKey(seed), dtype, kind)
