"""Independent float64 NumPy formulas for every loss (per element, before reduction).

Written from the definitions (papers, PyTorch/optax documentation), not from lossjax's code.
"""
import math

import numpy as np


def sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def log_softmax(z, axis=-1):
    m = np.max(z, axis=axis, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))


def mse(p, t):
    return (p - t) ** 2


def mae(p, t):
    return np.abs(p - t)


def huber(p, t, delta=1.0):
    r = np.abs(p - t)
    return np.where(r <= delta, 0.5 * r ** 2, delta * r - 0.5 * delta ** 2)


def smooth_l1(p, t, beta=1.0):
    r = np.abs(p - t)
    if beta == 0:
        return r
    return np.where(r < beta, 0.5 * r ** 2 / beta, r - 0.5 * beta)


def log_cosh(p, t):
    # log((e^r + e^-r) / 2) with e^|r| factored out, so large |r| does not overflow cosh.
    a = np.abs(p - t)
    return a - math.log(2) + np.log1p(np.exp(-2 * a))


def quantile(p, t, tau=0.5):
    u = t - p
    return np.where(u >= 0, tau * u, (tau - 1) * u)


def _stirling(t):
    with np.errstate(divide="ignore", invalid="ignore"):
        s = t * np.log(t) - t + 0.5 * np.log(2 * math.pi * t)
    return np.where(t > 1, s, 0.0)


def poisson_nll(p, t, log_input=True, full=False, eps=1e-8):
    out = np.exp(p) - t * p if log_input else p - t * np.log(p + eps)
    return out + (_stirling(t) if full else 0.0)


def gaussian_nll(p, t, var, full=False, eps=1e-6):
    v = np.maximum(var, eps)
    return 0.5 * (np.log(v) + (p - t) ** 2 / v) + (0.5 * math.log(2 * math.pi) if full else 0.0)


def binary_cross_entropy(p, t):
    with np.errstate(divide="ignore"):
        return -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))


def log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def binary_cross_entropy_with_logits(z, t, pos_weight=None):
    pw = 1.0 if pos_weight is None else pos_weight
    return -(pw * t * log_sigmoid(z) + (1 - t) * log_sigmoid(-z))


def focal_loss(z, t, alpha=None, gamma=2.0):
    ce = -(t * log_sigmoid(z) + (1 - t) * log_sigmoid(-z))
    one_minus_p_t = t * sigmoid(-z) + (1 - t) * sigmoid(z)
    out = ce * one_minus_p_t ** gamma
    if alpha is not None:
        out = out * (alpha * t + (1 - alpha) * (1 - t))
    return out


def hinge(s, y):
    return np.maximum(0, 1 - y * s)


def squared_hinge(s, y):
    return np.maximum(0, 1 - y * s) ** 2


def cross_entropy_mean(z, labels, weight=None, ignore_index=-100, label_smoothing=0.0):
    """PyTorch's reduction='mean' for integer labels, written as PyTorch composes it:
    (1 - eps) * weighted-mean NLL + eps / C * (smoothing sum / sum of target weights)."""
    n, c = z.shape
    lp = log_softmax(z)
    w = np.ones(c) if weight is None else weight
    keep = labels != ignore_index
    y = labels[keep]
    nll = -np.sum(w[y] * lp[keep, y]) / np.sum(w[y])
    smooth = -np.sum(lp[keep] * w) / np.sum(w[y])
    return (1 - label_smoothing) * nll + label_smoothing / c * smooth


def cross_entropy_probabilities(z, t, weight=None, label_smoothing=0.0):
    c = z.shape[-1]
    w = np.ones(c) if weight is None else weight
    t = (1 - label_smoothing) * t + label_smoothing / c
    return -np.sum(w * t * log_softmax(z), axis=-1)


def nll(lp, labels, weight=None):
    w = np.ones(lp.shape[-1]) if weight is None else weight
    return -w[labels] * lp[np.arange(len(labels)), labels]


def kl_divergence(lq, t):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(np.where(t > 0, t * (np.log(t) - lq), 0.0), axis=-1)


def softmax_focal_loss(z, labels, alpha=None, gamma=2.0):
    p = np.exp(log_softmax(z))
    idx = np.arange(len(labels))
    py = p[idx, labels]
    a = 1.0 if alpha is None else np.asarray(alpha)[labels]
    with np.errstate(divide="ignore", invalid="ignore"):
        return -a * (1 - py) ** gamma * np.log(py)


# -- adversarial (written with log-sigmoid from its definition) -------------------------------

def minimax_discriminator(r, f):
    return -log_sigmoid(r) - log_sigmoid(-f)          # -log D(real) - log(1 - D(fake))


def minimax_generator(f):
    return log_sigmoid(-f)                            # log(1 - D(fake))


def nonsaturating_generator(f):
    return -log_sigmoid(f)


def lsgan_discriminator(r, f):
    return 0.5 * (r - 1) ** 2 + 0.5 * f ** 2


def lsgan_generator(f):
    return 0.5 * (f - 1) ** 2


def hinge_discriminator(r, f):
    return np.maximum(0, 1 - r) + np.maximum(0, 1 + f)


def hinge_generator(f):
    return -f


def wasserstein_critic(r, f):
    return f - r


def wasserstein_generator(f):
    return -f


# -- robust ------------------------------------------------------------------------------------

def adaptive_robust(p, t, alpha=1.0, scale=1.0):
    """Barron (2019), eq. (1) and its special cases, elementwise."""
    x = p - t
    alpha = np.broadcast_to(alpha, x.shape).astype(np.float64)
    z2 = (x / scale) ** 2
    out = np.empty_like(z2)
    for i in np.ndindex(x.shape):
        a, z = alpha[i], z2[i]
        if a == 2:
            out[i] = z / 2
        elif a == 0:
            out[i] = np.log(z / 2 + 1)
        elif a == -np.inf:
            out[i] = 1 - np.exp(-z / 2)
        else:
            b = abs(a - 2)
            out[i] = b / a * ((z / b + 1) ** (a / 2) - 1)
    return out


def uncertainty_weighting(losses, log_vars, factor=0.5):
    sigma2 = np.exp(log_vars)                       # Kendall et al. (2018), eq. (7)
    return factor * losses / sigma2 + 0.5 * np.log(sigma2)
