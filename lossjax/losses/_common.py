"""Small pieces several loss families share, written so autodiff picks the midpoint
subgradient at a kink (the convention every `.grad` in the catalogue follows)."""
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P


def abs_mid(x):
    """|x| as maximum(x, -x): its autodiff derivative at 0 is 0, the midpoint of -1 and +1
    (jax.grad(jnp.abs)(0.) is 1)."""
    return jnp.maximum(x, -x)


def hinge_slope(m):
    """d max(0, m) / dm: 1 for m > 0, 0 for m < 0, 1/2 on the hinge (as jnp.maximum's)."""
    return jnp.where(m > 0, 1.0, jnp.where(m == 0, 0.5, 0.0))


# -- explicit sharding (jax.sharding.AxisType.Explicit meshes) ------------------------------
# Under an Explicit mesh the sharding is part of each array's type and JAX refuses operations
# whose result sharding is ambiguous. These helpers say what the result should be; with no
# mesh or an Auto mesh (GSPMD decides) they are the plain operations.

def explicit_sharding(x):
    """The NamedSharding in ``x``'s type when it splits ``x`` over explicit mesh axes."""
    sharding = jax.typeof(x).sharding
    if not sharding.mesh.explicit_axes or not any(s is not None for s in sharding.spec):
        return None
    return sharding


def lookup(table, index):
    """``table[index]`` (rows of ``table``), sharded like ``index`` under an explicit mesh."""
    sharding = explicit_sharding(index)
    if sharding is None:
        return table[index]
    return table.at[index].get(
        out_sharding=sharding.update(spec=P(*sharding.spec, *[None] * (table.ndim - 1))))


def gathered(*arrays):
    """The arrays replicated on every device under an explicit mesh (losses that compare
    every example with every other need the whole batch on each device); else unchanged."""
    out = tuple(x if explicit_sharding(x) is None else
                jax.sharding.reshard(x, explicit_sharding(x).update(spec=P())) for x in arrays)
    return out if len(out) > 1 else out[0]
