"""Small pieces several loss families share, written so autodiff picks the midpoint
subgradient at a kink (the convention every `.grad` in the catalogue follows)."""
import jax.numpy as jnp


def abs_mid(x):
    """|x| as maximum(x, -x): its autodiff derivative at 0 is 0, the midpoint of -1 and +1
    (jax.grad(jnp.abs)(0.) is 1)."""
    return jnp.maximum(x, -x)


def hinge_slope(m):
    """d max(0, m) / dm: 1 for m > 0, 0 for m < 0, 1/2 on the hinge (as jnp.maximum's)."""
    return jnp.where(m > 0, 1.0, jnp.where(m == 0, 0.5, 0.0))
