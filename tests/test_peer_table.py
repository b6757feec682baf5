"""The README's table of peer losses: every name exists on both sides, and the equivalences
the table states beyond the per-loss peer tests hold."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lossjax as lj

torch_functional = pytest.importorskip("torch.nn.functional")


def table_rows():
    with open("README.md") as f:
        text = f.read()
    section = text[text.index("### Coming from PyTorch, optax or Keras"):]
    section = section[:section.index("\n\n", section.index("| peer |"))]
    return re.findall(r"^\| (torch|optax|keras) `(\w+)` \| `lj\.(\w+)` \|", section, re.M)


def test_every_peer_and_lossjax_name_exists_and_every_peer_loss_is_listed():
    rows = table_rows()
    assert len(rows) >= 70
    for side, peer, ours in rows:
        assert isinstance(getattr(lj, ours), (lj.Loss, type(lj.fenchel_young))), ours
        if side == "torch":
            assert hasattr(torch_functional, peer), peer
        elif side == "optax":
            assert hasattr(optax.losses, peer), peer
    listed = {(side, peer) for side, peer, _ in rows}
    torch_losses = {n for n in dir(torch_functional) if n.endswith("_loss")} | {
        "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy", "kl_div"}
    assert {("torch", n) for n in torch_losses} <= listed
    assert {("optax", n) for n in dir(optax.losses) if not n.startswith("_")} <= listed


def test_optax_dice_is_tversky_averaged_over_classes():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal((4, 6, 3)))
    t = jax.nn.one_hot(jnp.asarray(rng.integers(0, 3, (4, 6))), 3)
    for a, b, smooth in ((0.5, 0.5, 1.0), (0.3, 0.7, 0.1)):
        def ours(q):
            return jnp.mean(lj.tversky(q, t, alpha=a, beta=b, smooth=smooth,
                                       activation="softmax", class_axis=-1, reduction="none"),
                            axis=-1)

        def theirs(q):
            return optax.losses.dice_loss(q, t, alpha=a, beta=b, smooth=smooth)
        np.testing.assert_allclose(ours(z), theirs(z), rtol=1e-12)
        np.testing.assert_allclose(jax.grad(lambda q: ours(q).sum())(z),
                                   jax.grad(lambda q: theirs(q).sum())(z), rtol=1e-10,
                                   atol=1e-14)
    zb = jnp.asarray(rng.standard_normal((4, 6)))
    tb = jnp.asarray(rng.integers(0, 2, (4, 6)), jnp.float64)
    np.testing.assert_allclose(lj.tversky(zb, tb, activation="sigmoid", reduction="none"),
                               optax.losses.binary_dice_loss(zb, tb), rtol=1e-12)
