"""Hamming, soft Hamming and CTC against brute-force NumPy references."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lossjax as lj
from lossjax import audit


def np_log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def test_hamming_and_soft_hamming_match_numpy():
    args, _ = lj.hamming.sample(jax.random.PRNGKey(0), jnp.float64)
    z, y = np.asarray(args[0]), np.asarray(args[1])
    keep = y != -100
    wrong = (z.argmax(-1) != y)[keep]
    np.testing.assert_allclose(lj.hamming(*args), wrong.mean())
    p = np.exp(np_log_softmax(z))
    p_y = np.take_along_axis(p, np.where(keep, y, 0)[..., None], -1)[..., 0]
    np.testing.assert_allclose(lj.soft_hamming(*args), (1 - p_y)[keep].mean(), rtol=1e-12)
    assert np.all(np.asarray(lj.hamming.grad(*args)) == 0)
    assert np.all(np.asarray(jax.grad(lj.hamming)(*args)) == 0)   # autodiff agrees: flat


def test_soft_hamming_equals_hamming_for_one_hot_predictions():
    y = jnp.asarray([[0, 2, 1]])
    z = 1e4 * jax.nn.one_hot(jnp.asarray([[0, 1, 1]]), 3)
    np.testing.assert_allclose(lj.soft_hamming(z, y), lj.hamming(z, y), atol=1e-12)


def collapse(path, blank=0):
    out, prev = [], None
    for token in path:
        if token != prev and token != blank:
            out.append(token)
        prev = token
    return out


def brute_force_ctc(logits, labels):
    """-log of the total probability of all frame-level paths that collapse to labels."""
    lp = np_log_softmax(np.asarray(logits, np.float64))
    frames, tokens = lp.shape
    total = -np.inf
    for path in itertools.product(range(tokens), repeat=frames):
        if collapse(path) == list(labels):
            total = np.logaddexp(total, sum(lp[t, k] for t, k in enumerate(path)))
    return -total


def test_ctc_matches_enumeration_of_alignments():
    key = jax.random.PRNGKey(1)
    logits = jax.random.normal(key, (3, 5, 3), jnp.float64)
    labels = jnp.asarray([[1, 2], [1, 1], [2, 2]])          # repeats need a blank between
    got = lj.ctc(logits, labels, reduction="none")
    want = [brute_force_ctc(logits[b], np.asarray(labels[b])) for b in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_ctc_paddings():
    key = jax.random.PRNGKey(2)
    logits = jax.random.normal(key, (1, 5, 3), jnp.float64)
    labels = jnp.asarray([[2, 1, 1]])
    got = lj.ctc(logits, labels, logit_paddings=jnp.asarray([[0, 0, 0, 0, 1.0]]),
                 label_paddings=jnp.asarray([[0, 0, 1.0]]), reduction="none")
    np.testing.assert_allclose(got[0], brute_force_ctc(logits[0, :4], [2, 1]), rtol=1e-10)


def test_unalignable_ctc_is_finite_and_documented():
    logits = jnp.zeros((1, 2, 3))
    labels = jnp.asarray([[1, 1]])            # needs 3 frames (1, blank, 1): impossible in 2
    value = lj.ctc(logits, labels)
    assert np.isfinite(float(value)) and float(value) > 1e4
    assert np.all(np.isfinite(np.asarray(jax.grad(lj.ctc)(logits, labels))))


def test_ctc_autodiff_audited_against_the_oracle():
    args, kwargs = lj.ctc.sample(jax.random.PRNGKey(0), jnp.float64)
    report = audit.check(lambda z: lj.ctc(z, args[1], **kwargs), args[0])
    assert report.ok and report.blame == "none", report.verdict


def test_ctc_reductions_and_zero_infinity_follow_pytorch():
    """PyTorch's F.ctc_loss: "mean" divides each sequence's loss by its target length, then
    averages; zero_infinity zeroes the loss and gradient of an unalignable pair."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 6, 4))
    labels = np.array([[1, 2, 2], [3, 1, 0], [1, 1, 1]])
    label_paddings = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]], float)
    logit_paddings = np.array([[0] * 6, [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 1]], float)
    # sequence 2: three 1s need 5 frames, it has 4: unalignable
    args = (jnp.asarray(logits), jnp.asarray(labels))
    pads = {"logit_paddings": jnp.asarray(logit_paddings),
            "label_paddings": jnp.asarray(label_paddings)}

    def ours(z):
        """Every (reduction, zero_infinity) value, and the gradients of their sums with
        zero_infinity, in one compiled program."""
        out = {}
        for zero_infinity in (False, True):
            for reduction in ("mean", "sum", "none"):
                def f(q):
                    return lj.ctc(q, args[1], reduction=reduction, zero_infinity=zero_infinity,
                                  **pads)
                out[f"{reduction} {zero_infinity}"] = f(z)
                if zero_infinity:
                    out[f"{reduction} grad"] = jax.grad(lambda q: jnp.sum(f(q)))(z)
        return out
    got = jax.device_get(jax.jit(ours)(args[0]))

    for reduction in ("mean", "sum", "none"):
        for zero_infinity in (False, True):
            z = torch.tensor(logits, requires_grad=True)
            want = torch.nn.functional.ctc_loss(
                z.log_softmax(-1).transpose(0, 1), torch.tensor(labels),
                torch.tensor((1 - logit_paddings).sum(1).astype(int)),
                torch.tensor((1 - label_paddings).sum(1).astype(int)),
                reduction=reduction, zero_infinity=zero_infinity)
            if zero_infinity:
                np.testing.assert_allclose(got[f"{reduction} True"], want.detach().numpy(),
                                           rtol=1e-10)
                want.sum().backward()
                np.testing.assert_allclose(got[f"{reduction} grad"], z.grad.numpy(), rtol=1e-8,
                                           atol=1e-12)
            else:       # PyTorch: inf; here the documented large finite value of -log_epsilon
                np.testing.assert_allclose(
                    got["none False"][:2], torch.nn.functional.ctc_loss(
                        z.log_softmax(-1).transpose(0, 1)[:, :2], torch.tensor(labels[:2]),
                        torch.tensor([6, 5]), torch.tensor([3, 2]),
                        reduction="none").detach().numpy(), rtol=1e-10)
                assert 1e5 <= float(got["none False"][2]) < 1.1e5
    # the per-token mean, by weights = target lengths
    lengths = jnp.asarray([3.0, 2.0, 3.0])
    per_token = lj.ctc(*args, weights=lengths, zero_infinity=True, **pads)
    np.testing.assert_allclose(per_token, got["sum True"] / 8.0, rtol=1e-12)
