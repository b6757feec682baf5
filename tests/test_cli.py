"""The `lossjax` command and the self-check that `make lab` prints."""
import jax.numpy as jnp
import pytest

import lossjax as lj
from lossjax import cli, selfcheck


def test_catalog_markdown_lists_every_loss_and_matches_the_readme(capsys):
    assert cli.main(["catalog", "--markdown"]) == 0
    table = capsys.readouterr().out
    for loss in lj.catalog():
        assert f"| `{loss.name}` |" in table
    with open("README.md") as f:
        assert table.strip() in f.read(), "README's loss table is stale: regenerate it with " \
                                          "`lossjax catalog --markdown`"


@pytest.mark.parametrize("name", ["huber", "cross_entropy"])
def test_selfcheck_agrees_for_correct_losses(name):
    row = selfcheck.agreement(lj.get(name))
    assert row.worst() <= cli.TOLERANCE
    assert row.kink_elements == (2 if name == "huber" else 0)


def test_selfcheck_flags_a_wrong_derivative():
    def half_wrong(predictions, targets):
        r = predictions - targets
        return lj.Terms(r * r, grad=lambda: 2 * r * jnp.where(r > 1, 1.01, 1.0),
                        hess=lambda: jnp.full_like(r, 2.0))

    wrong = lj.Loss(half_wrong, family="test", formula="r^2", sampler=lj.mse._sampler,
                    elementwise=True)
    row = selfcheck.agreement(wrong)
    assert row.grad["edge"] > 1e-3 and row.worst() > cli.TOLERANCE
    assert row.hess["generic"] == 0.0
    assert "| half_wrong |" in selfcheck.to_markdown([row])
