"""Seeded synthetic data sets for experiments and tests.

Each function is a pure function of a PRNG key and sizes and returns a :class:`Dataset`:
``data`` (a dict of arrays sharing the leading example axis — pass it to ``lj.train.fit``)
and ``truth`` (what generated it: true weights, class centres, mixture modes...).

    ds = lj.data.linear_regression(jax.random.PRNGKey(0), 200, 3, outlier_fraction=0.2)
    ds.data["x"], ds.data["y"], ds.data["outlier"], ds.truth["weight"], ds.truth["bias"]
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Dataset", "linear_regression", "imbalanced_binary", "imbalanced_multiclass",
           "clustered_embeddings", "segmentation_masks", "sequences", "gaussian_mixture_2d"]


class Dataset(NamedTuple):
    data: dict
    truth: dict


def _count(who, name, value, low=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"lj.data.{who}: `{name}` must be an int ≥ {low}, got {value!r}.")


def _number(who, name, value, lo, hi, lo_open=False, hi_open=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"lj.data.{who}: `{name}` must be a number, got {value!r}.") from None
    if math.isnan(v) or (v <= lo if lo_open else v < lo) or (
            hi is not None and (v >= hi if hi_open else v > hi)):
        raise ValueError(f"lj.data.{who}: `{name}` must lie in {'(' if lo_open else '['}{lo}, "
                         f"{'inf' if hi is None else hi}{')' if hi_open or hi is None else ']'}"
                         f", got {value!r}.")
    return v


def _key(who, key):
    if not hasattr(key, "dtype") or not (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or (
            key.dtype == jnp.uint32 and key.shape == (2,))):
        raise TypeError(f"lj.data.{who}: `key` must be a PRNG key (jax.random.PRNGKey(seed) or "
                        f"jax.random.key(seed)), got {key!r}.")
    return key


def linear_regression(key, n: int, d: int = 1, *, noise: float = 0.1,
                      outlier_fraction: float = 0.0, outlier_scale: float = 10.0,
                      dtype=jnp.float32) -> Dataset:
    """y = x·w + b + ε with ε ~ N(0, noise²), x ~ N(0, I), w ~ N(0, I), b ~ N(0, 1).

    Exactly ``round(outlier_fraction · n)`` targets, chosen at random, are gross outliers:
    shifted upwards by ``outlier_scale · (1 + |z|)``, z ~ N(0, 1) — one-sided, so that they
    bias a least-squares fit (symmetric outliers would mostly add variance).
    data: x (n, d), y (n,), outlier (n,) bool. truth: weight (d,), bias ().
    """
    who = "linear_regression"
    _key(who, key)
    _count(who, "n", n), _count(who, "d", d)
    _number(who, "noise", noise, 0, None)
    _number(who, "outlier_fraction", outlier_fraction, 0, 1, hi_open=True)
    _number(who, "outlier_scale", outlier_scale, 0, None)
    kx, kw, kb, ke, ko, kz = jax.random.split(key, 6)
    x = jax.random.normal(kx, (n, d), dtype)
    w = jax.random.normal(kw, (d,), dtype)
    b = jax.random.normal(kb, (), dtype)
    y = x @ w + b + noise * jax.random.normal(ke, (n,), dtype)
    k = round(outlier_fraction * n)
    outlier = jnp.zeros(n, bool).at[jax.random.permutation(ko, n)[:k]].set(True)
    shift = outlier_scale * (1 + jnp.abs(jax.random.normal(kz, (n,), dtype)))
    y = jnp.where(outlier, y + shift, y)
    return Dataset({"x": x, "y": y, "outlier": outlier}, {"weight": w, "bias": b})


def _class_sizes(n, weights):
    """Integer class sizes summing to n, proportional to weights, every class at least 1."""
    raw = [n * w / sum(weights) for w in weights]
    sizes = [max(1, int(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    i = 0
    while sum(sizes) < n:
        sizes[order[i % len(order)]] += 1
        i += 1
    while sum(sizes) > n:
        j = max(range(len(sizes)), key=lambda c: sizes[c])
        sizes[j] -= 1
    return sizes


def _gaussian_classes(key, sizes, d, separation, dtype):
    kc, kx, kp = jax.random.split(key, 3)
    c = len(sizes)
    centers = jax.random.normal(kc, (c, d), dtype)
    centers = separation / 2 * centers / jnp.linalg.norm(centers, axis=1, keepdims=True)
    labels = jnp.concatenate([jnp.full(s, i, jnp.int32) for i, s in enumerate(sizes)])
    x = centers[labels] + jax.random.normal(kx, (len(labels), d), dtype)
    perm = jax.random.permutation(kp, len(labels))
    return x[perm], labels[perm], centers


def imbalanced_binary(key, n: int, d: int = 2, *, ratio: float = 10.0,
                      separation: float = 2.0, dtype=jnp.float32) -> Dataset:
    """Two Gaussian classes N(±μ, I) with ‖2μ‖ = ``separation``; ``ratio`` negatives per
    positive (exact up to rounding; at least one positive). Label 1 is the minority class.
    data: x (n, d), y (n,) int32. truth: centers (2, d), positive_fraction."""
    who = "imbalanced_binary"
    _key(who, key)
    _count(who, "n", n, 2), _count(who, "d", d)
    _number(who, "ratio", ratio, 1, None)
    _number(who, "separation", separation, 0, None)
    kc, kx, kp = jax.random.split(key, 3)
    mu = jax.random.normal(kc, (d,), dtype)
    mu = separation / 2 * mu / jnp.linalg.norm(mu)
    sizes = _class_sizes(n, [ratio, 1.0])
    y = jnp.concatenate([jnp.zeros(sizes[0], jnp.int32), jnp.ones(sizes[1], jnp.int32)])
    centers = jnp.stack([-mu, mu])
    x = centers[y] + jax.random.normal(kx, (n, d), dtype)
    perm = jax.random.permutation(kp, n)
    return Dataset({"x": x[perm], "y": y[perm]},
                   {"centers": centers, "positive_fraction": sizes[1] / n})


def imbalanced_multiclass(key, n: int, d: int = 2, num_classes: int = 5, *,
                          ratio: float = 10.0, separation: float = 4.0,
                          dtype=jnp.float32) -> Dataset:
    """``num_classes`` Gaussian classes N(c_k, I), centres at distance separation/2 from the
    origin in random directions, sizes decaying geometrically from the largest to the smallest
    by a factor ``ratio`` (class 0 largest). data: x (n, d), y (n,) int32.
    truth: centers (C, d), class_sizes (C,)."""
    who = "imbalanced_multiclass"
    _key(who, key)
    _count(who, "num_classes", num_classes, 2), _count(who, "d", d)
    _count(who, "n", n, num_classes)
    _number(who, "ratio", ratio, 1, None)
    _number(who, "separation", separation, 0, None)
    weights = [ratio ** (-k / (num_classes - 1)) for k in range(num_classes)]
    sizes = _class_sizes(n, weights)
    x, y, centers = _gaussian_classes(key, sizes, d, separation, dtype)
    return Dataset({"x": x, "y": y}, {"centers": centers, "class_sizes": jnp.asarray(sizes)})


def clustered_embeddings(key, n: int, d: int = 8, num_classes: int = 10, *,
                         spread: float = 0.5, nuisance: int = 0, nuisance_scale: float = 3.0,
                         dtype=jnp.float32) -> Dataset:
    """Balanced clusters for metric learning: unit-norm class centres in d dimensions plus
    isotropic noise of std ``spread``, followed by ``nuisance`` extra dimensions of pure noise
    (std ``nuisance_scale``) that a good embedding must learn to ignore.
    data: x (n, d + nuisance), y (n,) int32. truth: centers (C, d)."""
    who = "clustered_embeddings"
    _key(who, key)
    _count(who, "num_classes", num_classes, 2), _count(who, "d", d)
    _count(who, "n", n, num_classes), _count(who, "nuisance", nuisance, 0)
    _number(who, "spread", spread, 0, None)
    _number(who, "nuisance_scale", nuisance_scale, 0, None)
    kc, kn = jax.random.split(key)
    x, y, centers = _gaussian_classes(kc, _class_sizes(n, [1.0] * num_classes), d, 2.0, dtype)
    x = centers[y] + spread * (x - centers[y])
    if nuisance:
        x = jnp.concatenate([x, nuisance_scale * jax.random.normal(kn, (n, nuisance), dtype)],
                            axis=1)
    return Dataset({"x": x, "y": y}, {"centers": centers})


def segmentation_masks(key, n: int, size: tuple = (32, 32), *, foreground: float = 0.02,
                       contrast: float = 1.0, noise: float = 1.0,
                       dtype=jnp.float32) -> Dataset:
    """Images with one small disc of foreground each: the disc's area is ``foreground`` of the
    image (radius √(foreground·H·W/π), at least one pixel), its centre uniform inside the image,
    image = contrast · mask + N(0, noise²). data: image (n, H, W), mask (n, H, W) float in
    {0, 1}. truth: foreground_fraction (the measured mean of the masks)."""
    who = "segmentation_masks"
    _key(who, key)
    _count(who, "n", n)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and s >= 2 for s in size)):
        raise ValueError(f"lj.data.{who}: `size` must be (height, width) with ints ≥ 2, "
                         f"got {size!r}.")
    _number(who, "foreground", foreground, 0, 1, lo_open=True, hi_open=True)
    _number(who, "contrast", contrast, 0, None)
    _number(who, "noise", noise, 0, None)
    h, w = size
    radius = max(math.sqrt(foreground * h * w / math.pi), 0.5)
    kc, kn = jax.random.split(key)
    centre = jax.random.uniform(kc, (n, 2), dtype) * jnp.asarray([h - 1, w - 1], dtype)
    rows = jnp.arange(h, dtype=dtype)[None, :, None]
    cols = jnp.arange(w, dtype=dtype)[None, None, :]
    dist2 = (rows - centre[:, 0, None, None]) ** 2 + (cols - centre[:, 1, None, None]) ** 2
    nearest = (rows == jnp.round(centre[:, 0, None, None])) & (
        cols == jnp.round(centre[:, 1, None, None]))
    mask = ((dist2 <= radius ** 2) | nearest).astype(dtype)
    image = contrast * mask + noise * jax.random.normal(kn, (n, h, w), dtype)
    return Dataset({"image": image, "mask": mask}, {"foreground_fraction": jnp.mean(mask)})


def sequences(key, n: int, length: int = 16, d: int = 8, *, num_classes: int = 8,
              noise: float = 0.0, min_length: int | None = None,
              dtype=jnp.float32) -> Dataset:
    """Token sequences labelled by a linear teacher: features x_t ~ N(0, I_d), label
    y_t = argmax_k (W x_t + ε)_k over ``num_classes`` classes (ε ~ N(0, noise²) label noise).
    With ``min_length``, each sequence gets a random length in [min_length, length];
    ``where`` marks the valid positions and the padding labels are -100 (ignore_index).
    data: x (n, L, d), y (n, L) int32, where (n, L) bool, lengths (n,).
    truth: teacher (num_classes, d)."""
    who = "sequences"
    _key(who, key)
    _count(who, "n", n), _count(who, "length", length), _count(who, "d", d)
    _count(who, "num_classes", num_classes, 2)
    _number(who, "noise", noise, 0, None)
    if min_length is not None and not (isinstance(min_length, int) and 1 <= min_length <= length):
        raise ValueError(f"lj.data.{who}: `min_length` must be an int in [1, {length}], "
                         f"got {min_length!r}.")
    kx, kw, ke, kl = jax.random.split(key, 4)
    x = jax.random.normal(kx, (n, length, d), dtype)
    teacher = jax.random.normal(kw, (num_classes, d), dtype)
    scores = x @ teacher.T + noise * jax.random.normal(ke, (n, length, num_classes), dtype)
    if min_length is None:
        lengths = jnp.full(n, length, jnp.int32)
    else:
        lengths = jax.random.randint(kl, (n,), min_length, length + 1, jnp.int32)
    where = jnp.arange(length)[None, :] < lengths[:, None]
    y = jnp.where(where, jnp.argmax(scores, axis=-1).astype(jnp.int32), -100)
    return Dataset({"x": x, "y": y, "where": where, "lengths": lengths}, {"teacher": teacher})


def gaussian_mixture_2d(key, n: int, *, modes: int = 8, radius: float = 2.0,
                        std: float = 0.05, dtype=jnp.float32) -> Dataset:
    """The GAN benchmark: ``modes`` isotropic Gaussians of std ``std`` on a circle of
    ``radius``, equally likely. data: x (n, 2), mode (n,) int32. truth: centers (modes, 2)."""
    who = "gaussian_mixture_2d"
    _key(who, key)
    _count(who, "n", n), _count(who, "modes", modes)
    _number(who, "radius", radius, 0, None)
    _number(who, "std", std, 0, None)
    km, kx = jax.random.split(key)
    angle = 2 * jnp.pi * jnp.arange(modes, dtype=dtype) / modes
    centers = radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    mode = jax.random.randint(km, (n,), 0, modes, jnp.int32)
    x = centers[mode] + std * jax.random.normal(kx, (n, 2), dtype)
    return Dataset({"x": x, "mode": mode}, {"centers": centers})
