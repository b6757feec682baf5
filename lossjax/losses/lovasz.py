r"""Lovász losses (family "segmentation"): the Lovász extension of the Jaccard loss, a convex
piecewise-linear surrogate of 1 - IoU that is optimised directly (Berman, Rannen Triki,
Blaschko, CVPR 2018; reference implementation bermanmaxim/LovaszSoftmax).

For one set of pixels with errors :math:`e_i` and ground truth, sort the errors in decreasing
order, :math:`e_{\pi_1} \ge e_{\pi_2} \ge \dots`; the loss is
:math:`\sum_k \phi(e_{\pi_k})\, g_k` with :math:`g_k = \Delta(\pi_1..\pi_k) -
\Delta(\pi_1..\pi_{k-1})` the increments of the Jaccard loss
:math:`\Delta(M) = (f + b) / (G + b)` of predicting the pixels of M wrong (f foreground and b
background pixels among them, G foreground pixels in all; :math:`\Delta(\emptyset) = 0`).
:math:`g` is the loss's gradient with respect to the errors (0 <= g; sum g = Delta(all)).

Ties. Where errors are tied the sort order is not unique and the gradient jumps: those are
the loss's kinks. Here a tied pixel gets the average of its g over all orders of the tie
(the centre of the subdifferential, as ``jnp.max`` splits a tied maximum evenly; for two tied
pixels it is the midpoint of the one-sided derivatives, the catalogue's convention). The value
is written as :math:`\sum_i \phi(e_i) w_i` with those averaged weights w held constant, so
autodiff returns the same subgradient, and the result does not depend on the order of the
pixels in the input. (The reference takes whatever order its sort returns.)

Ignored pixels (``ignore_index``; also labels out of range, which ``lj.checked`` reports)
are left out, as the reference removes them before sorting.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lossjax import _checks, _domain, _sampling
from lossjax._loss import Kink, Sample, Terms, loss
from lossjax.losses._common import abs_mid, gathered, hinge_slope

__all__ = ["lovasz_softmax", "lovasz_hinge"]

_REFERENCES = ["Berman, Rannen Triki, Blaschko, The Lovász-Softmax loss: A tractable surrogate "
               "for the optimization of the intersection-over-union measure in neural "
               "networks, CVPR 2018 (reference code: github.com/bermanmaxim/LovaszSoftmax)."]


# -- the Lovász gradient of the Jaccard loss ------------------------------------------------

def _block_sums(x, block):
    """Per entry, the sum of ``x`` (..., P) over its block (entries of equal ``block`` id along
    the last axis): a segment sum, exact where differences of one running sum would cancel."""
    size = x.shape[-1]
    rows = x.reshape(-1, size), block.reshape(-1, size)
    sums = jax.vmap(lambda v, b: jax.ops.segment_sum(v, b, num_segments=size)[b])(*rows)
    return sums.reshape(x.shape)


def _weights(errors, fg, bg):
    """Lovász weights w (dl/de) of rows of pixels along the last axis; ``fg``/``bg`` are 0/1
    floats, both 0 for an ignored pixel (weight 0)."""
    last = errors.ndim - 1
    key = jnp.where(fg + bg > 0, -errors, jnp.inf)         # decreasing; ignored pixels last
    # 0, 1, .. along the rows (an iota built from the input keeps its sharding)
    index = jnp.cumsum(jnp.ones_like(key, dtype=jnp.int32), axis=last) - 1
    e, f, b, order = jax.lax.sort((key, fg, bg, index), dimension=last, num_keys=1)
    previous = jnp.concatenate([e[..., :1], e[..., :-1]], axis=last)
    start = (index == 0) | (e != previous)                      # tie blocks in sorted order
    end = jnp.concatenate([e[..., 1:] != e[..., :-1], jnp.ones_like(start[..., :1])], axis=last)

    def inverse(x):
        return 1 / jnp.where(x > 0, x, 1)

    def at_start(running):                      # a nondecreasing running count at block start
        return jax.lax.cummax(jnp.where(start, running, 0), axis=last)

    def at_end(running):                        # ... and at block end
        return jax.lax.cummin(jnp.where(end, running, jnp.inf), axis=last, reverse=True)

    total_fg = jnp.sum(fg, axis=last, keepdims=True)
    fg_through, bg_through = jnp.cumsum(f, axis=last), jnp.cumsum(b, axis=last)
    fg_start, bg_start = at_start(fg_through - f), at_start(bg_through - b)
    # counts are exact in floating point: their differences are too
    fg_block, bg_block = at_end(fg_through) - fg_start, at_end(bg_through) - bg_start
    # Delta(f, b) = (f + b) / (G + b): a foreground pixel after b background ones adds
    # 1 / (G + b). Over the orders of its tie block (b_0 background pixels before the block,
    # b_B in it) that b is uniform on b_0..b_0 + b_B, so its average weight is the mean of
    # 1 / (G + b) there (a segment sum: a difference of running sums would cancel). The
    # background pixels share the rest of the block's increment,
    # Delta(f_0 + f_B, b_0 + b_B) - Delta(f_0, b_0) = (f_B (G + b_0) + b_B (G - f_0)) /
    # ((G + b_0)(G + b_0 + b_B)): a sum of positive terms; 1 for the first background
    # pixels of an empty foreground (G + b_0 = 0).
    union = total_fg + bg_start
    increment = jnp.where(union > 0, (fg_block * union + bg_block * (total_fg - fg_start))
                          * inverse(union) * inverse(union + bg_block), 1.0)
    block = jnp.cumsum(start, axis=last) - 1
    fg_weight = (inverse(union) + _block_sums(b * inverse(total_fg + bg_through), block)) \
        / (bg_block + 1)
    bg_weight = (increment - fg_block * fg_weight) * inverse(bg_block)
    w = jnp.where(f > 0, fg_weight, jnp.where(b > 0, bg_weight, 0.0))
    return jax.lax.sort((order, w), dimension=last, num_keys=1)[1]


def _lovasz_weights(errors, fg, bg):
    """:func:`_weights` with the inputs as constants (w is piecewise constant in them)."""
    return _weights(*(jax.lax.stop_gradient(x).astype(errors.dtype) for x in (errors, fg, bg)))


def _tied(errors, valid):
    """Host-side: entries whose error equals another valid entry's in the same row (last
    axis), for the kinks' ``locate``."""
    e, v = np.asarray(errors, np.float64), np.asarray(valid, bool)
    out = np.zeros(e.shape, bool)
    for index in np.ndindex(e.shape[:-1]):
        values, counts = np.unique(e[index][v[index]], return_counts=True)
        out[index] = v[index] & np.isin(e[index], values[counts > 1])
    return out


# -- Lovász-Softmax -------------------------------------------------------------------------

def _class_selection(name, classes, num_classes):
    if isinstance(classes, str):
        if classes not in ("present", "all"):
            raise ValueError(f"{name}: `classes` must be 'present', 'all' or a sequence of "
                             f"class indices, got {classes!r}.")
        return classes
    chosen = tuple(int(c) for c in classes)
    if not chosen or any(c < 0 or c >= num_classes for c in chosen):
        raise ValueError(f"{name}: `classes` must list class indices in [0, {num_classes}), "
                         f"got {classes!r}.")
    return np.isin(np.arange(num_classes), chosen)


def _softmax_layout(name, probas, labels, axis, ignore_index):
    """(N, S, C) probabilities, (N, S, C) 0/1 foreground and background indicators, and a
    function moving (N, S, C) arrays back to the probabilities' layout."""
    ax = _checks.class_axis(name, "probas", probas, axis)
    if probas.ndim < 2 or ax == 0:
        raise ValueError(f"{name}: `probas` must have a batch axis 0 and a class axis "
                         f"(`axis`={axis}), e.g. (N, C, H, W); got shape "
                         f"{tuple(probas.shape)}.")
    labels = _checks.integer_labels(name, "labels", labels)
    expected = probas.shape[:ax] + probas.shape[ax + 1:]
    if labels.shape != expected:
        raise ValueError(f"{name}: `labels` must have the shape of `probas` without the class "
                         f"axis {axis}, i.e. {tuple(expected)}; got {tuple(labels.shape)}.")
    moved = jnp.moveaxis(probas, ax, -1)
    n, num_classes = moved.shape[0], moved.shape[-1]
    q = moved.reshape(n, -1, num_classes)
    y = labels.reshape(n, -1)
    valid = (y != ignore_index) & (y >= 0) & (y < num_classes)
    fg = ((y[..., None] == jnp.arange(num_classes)) & valid[..., None]).astype(q.dtype)
    bg = valid[..., None].astype(q.dtype) - fg

    def back(x):
        return jnp.moveaxis(x.reshape(moved.shape), -1, ax)
    return q, fg, bg, back


def _per_row(x, per_image):
    """(N, S, C) -> rows sorted on their own: (C, N*S) for the batch, (N, C, S) per image."""
    if per_image:
        return jnp.swapaxes(x, 1, 2)
    return jnp.transpose(x, (2, 0, 1)).reshape(x.shape[2], -1)


def _from_rows(x, shape, per_image):
    if per_image:
        return jnp.swapaxes(x, 1, 2)
    return jnp.transpose(x.reshape(shape[2], shape[0], shape[1]), (1, 2, 0))


def _softmax_sample(key, dtype, kind):
    if kind == "generic":
        # (N, C, H, W) = (2, 3, 2, 3), labels in [0, 3). Each class's column is sorted on its
        # own, so the sampler sets its errors |fg - p| directly: a permutation of a grid of
        # step 1/16 with jitter, away from 0 (kinks of |.|) and from each other (ties are
        # kinks) by more than the audit's finite-difference steps
        rng = _sampling.host_rng(key)
        n, c, pixels = 2, 3, 6
        labels = rng.integers(0, c, (n, pixels))
        grid = (np.arange(n * pixels) + 1.5) / 16
        errors = np.stack([rng.permutation(grid) for _ in range(c)], -1).reshape(n, pixels, c)
        errors = errors + rng.uniform(-1 / 128, 1 / 128, errors.shape)
        fg = labels[..., None] == np.arange(c)
        p = np.where(fg, 1 - errors, errors).transpose(0, 2, 1).reshape(n, c, 2, 3)
        return Sample((jnp.asarray(p.astype(np.float32), dtype),
                       jnp.asarray(labels.reshape(n, 2, 3), jnp.int32)), {})
    # per image: probabilities exactly 0 and 1 (|fg - p| = 0: kinks), errors 0.25 tied
    # between a foreground and a background pixel (pixels 0 and 1 of image 0, in classes 0
    # and 1), an ignored pixel, class 2 absent
    rows = [[[0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]],
            [[0.0, 1.0, 0.0], [0.5, 0.125, 0.375], [0.0, 1.0, 0.0], [0.625, 0.125, 0.25]]]
    p = np.asarray(rows).transpose(0, 2, 1).reshape(2, 3, 2, 2)
    labels = np.asarray([[[0, 1], [0, -100]], [[1, 1], [0, 0]]])
    return Sample((jnp.asarray(p, dtype), jnp.asarray(labels, jnp.int32)), {"per_image": True})


def _softmax_kinks(probas, labels, *, classes="present", per_image=False, ignore_index=-100,
                   axis=1):
    """Entries at |fg - p| = 0 or whose error is tied within its sorted row."""
    q, fg, bg, back = _softmax_layout("lovasz_softmax", jnp.asarray(probas), labels, axis,
                                      ignore_index)
    errors = jnp.abs(fg - q)
    valid = (fg + bg) > 0
    tied = _tied(_per_row(errors, per_image), _per_row(valid, per_image))
    at_zero = valid & (errors == 0)
    return np.asarray(back(_from_rows(jnp.asarray(tied), q.shape, per_image) | at_zero))


def _one_hot_probas(s):
    """Probabilities equal to the one-hot labels (all 0 for ignored pixels): every error 0."""
    p, labels = s.args
    axis = s.kwargs.get("axis", 1)
    one_hot = jax.nn.one_hot(labels, p.shape[axis], axis=axis, dtype=p.dtype)
    return Sample((one_hot, labels), s.kwargs)


@loss(constraints=[_domain.unit_interval("probas"),
                   _domain.class_index("labels", "probas", axis="axis")],
      nonnegative=True, perfect=_one_hot_probas,
      family="segmentation", elementwise=False, has_hess_diag=False,
      formula=r"\ell_c = \sum_k e_{\pi_k} g_k(\pi),\ e = |\mathbb{1}[y = c] - p_c|"
              r"\ \text{sorted decreasingly}",
      sampler=_softmax_sample,
      kinks=[Kink("tied errors |fg - p| within a sorted row (one class's pixels, per image "
                  "or over the batch), or p == fg (exactly 0 or 1)",
                  "tied pixels: the average of the Lovász gradient over the orders of the "
                  "tie (for two, the midpoint of the one-sided derivatives); p == fg: "
                  "d|fg - p|/dp = 0 (midpoint of -1 and +1)", _softmax_kinks)],
      references=_REFERENCES)
def lovasz_softmax(probas, labels, *, classes="present", per_image=False, ignore_index=-100,
                   axis=1):
    r"""Lovász-Softmax loss on class probabilities (the reference's ``lovasz_softmax``).

    For each class c, the errors :math:`|\mathbb{1}[y = c] - p_c|` of its pixels are sorted
    and weighted by the Lovász gradient of the Jaccard loss (module docstring), giving
    :math:`\ell_c`, a convex surrogate of 1 - IoU of class c.

    Args:
      probas: probabilities (after softmax) with the classes along ``axis``, e.g.
        (N, C, H, W) for the default ``axis=1`` (the reference's layout); any spatial shape.
      labels: integer labels shaped like ``probas`` without the class axis.
      classes: "present" (classes that occur in the labels of the set: image or batch),
        "all", or a sequence of class indices.
      per_image: sort each image's pixels on its own (else the whole batch's pixels at once,
        the reference's default).
      ignore_index: label of pixels left out.
      axis: the class axis of ``probas``.

    Elements: with ``per_image=False`` the classes, shape (C,), the classes not selected by
    ``classes`` masked out, so the mean is the reference's mean over classes (and
    ``weights=`` of shape (C,) are class weights); with ``per_image=True`` the images,
    shape (N,), each the mean over its selected classes, so the mean is the reference's
    mean over images. Images (or a batch) with no selected class are masked out (the
    reference's result there is ill-defined).

    Derivative w.r.t. :math:`p_{ic}`: :math:`w_{ic}\,\operatorname{sign}(p_{ic} -
    \mathbb{1}[y_i = c])`, w the Lovász weights (ties averaged), divided by the number of
    selected classes per image when ``per_image``.
    """
    name = "lovasz_softmax"
    if not per_image:                   # one sort over the batch: every pixel on each device
        probas, labels = gathered(probas, jnp.asarray(labels))
    q, fg, bg, back = _softmax_layout(name, probas, labels, axis, ignore_index)
    selection = _class_selection(name, classes, q.shape[-1])
    d_errors = jnp.sign(q - fg)
    errors = abs_mid(fg - q)
    weights = _from_rows(_lovasz_weights(_per_row(errors, per_image), _per_row(fg, per_image),
                                         _per_row(bg, per_image)), q.shape, per_image)
    sum_axes = (1,) if per_image else (0, 1)
    per_class = jnp.sum(errors * weights, axis=sum_axes)            # (N, C) or (C,)
    any_valid = jnp.any(fg + bg > 0, axis=(1, 2) if per_image else None)
    if isinstance(selection, str):
        present = jnp.sum(fg, axis=sum_axes) > 0
        selected = present if selection == "present" else jnp.ones_like(present)
    else:
        selected = jnp.broadcast_to(jnp.asarray(selection), per_class.shape)
    selected = selected & (any_valid[:, None] if per_image else any_valid)

    if per_image:
        count = jnp.sum(selected, axis=-1)
        share = selected / jnp.maximum(count, 1)[:, None].astype(q.dtype)   # (N, C)
        value = jnp.sum(share * per_class, axis=-1)
        mask = count > 0

        def scale(coef):                                    # dl/d per_class, (N, 1, C)
            return (coef[:, None] * share)[:, None, :]
    else:
        value, mask = per_class, selected

        def scale(coef):
            return coef[None, None, :]

    slope = weights * d_errors

    def vjp(coef):
        return back(scale(coef) * slope)

    def jvp(tangent):
        dq = jnp.moveaxis(tangent, axis, -1).reshape(q.shape)
        d_class = jnp.sum(slope * dq, axis=sum_axes)
        return jnp.sum(share * d_class, axis=-1) if per_image else d_class

    return Terms(value, grad=None, vjp=vjp, jvp=jvp, mask=mask)


# -- Lovász hinge ----------------------------------------------------------------------------

def _hinge_layout(name, logits, labels, ignore_index):
    """(rows of) logits, 0/1 foreground and background indicators, signs, shaped (N, S)."""
    if logits.ndim < 2:
        raise ValueError(f"{name}: `logits` must have a batch axis and at least one spatial "
                         f"axis, e.g. (N, H, W); got shape {tuple(logits.shape)}.")
    labels = jnp.asarray(labels)
    _checks.same_shape(name, "logits", logits, "labels", labels)
    z = logits.reshape(logits.shape[0], -1)
    y = labels.reshape(z.shape)
    valid = ((y == 0) | (y == 1)) & (y != ignore_index)
    fg = (valid & (y == 1)).astype(z.dtype)
    bg = valid.astype(z.dtype) - fg
    return z, fg, bg, 2 * fg - 1


def _hinge_rows(x, per_image):
    return x if per_image else x.reshape(1, -1)


def _hinge_sample(key, dtype, kind):
    if kind == "generic":
        # (N, H, W) = (3, 2, 4); errors 1 - z s set directly: a permutation of a grid of step
        # 1/8 over the whole batch (distinct per image and over the batch), with jitter, at
        # least 1/16 from the hinge's kink at 0
        rng = _sampling.host_rng(key)
        labels = rng.integers(0, 2, (3, 2, 4))
        errors = (rng.permutation(24) - 11.5) / 8 + rng.uniform(-1 / 128, 1 / 128, 24)
        z = (1 - errors.reshape(3, 2, 4)) * (2 * labels - 1)
        return Sample((jnp.asarray(z.astype(np.float32), dtype),
                       jnp.asarray(labels, jnp.int32)), {})
    # per image (S = 6): image 0 has an error exactly 0 (the hinge's kink), a tie of a
    # foreground and a background pixel, an ignored pixel and a saturated right logit;
    # image 1 no foreground (tied background pair); image 2 only foreground (tied pair) and
    # a saturated wrong logit
    s = _sampling.saturating(dtype)
    z = [[1.0, 0.5, 0.5, -0.5, 3.0, s], [s, -s, 0.25, 0.25, -2.0, 1.5],
         [-s, 2.0, -0.5, -0.5, 0.75, 0.0]]
    labels = [[1, 0, 1, 0, -100, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]
    return Sample((jnp.asarray(z, dtype).reshape(3, 2, 3),
                   jnp.asarray(labels, jnp.int32).reshape(3, 2, 3)), {})


def _hinge_kinks(logits, labels, *, per_image=True, ignore_index=-100):
    """Entries whose error 1 - z s is 0 (the hinge) or tied within its sorted row."""
    z, fg, bg, signs = _hinge_layout("lovasz_hinge", jnp.asarray(logits), labels, ignore_index)
    errors, valid = 1 - z * signs, (fg + bg) > 0
    tied = _tied(_hinge_rows(errors, per_image), _hinge_rows(valid, per_image))
    return (tied.reshape(z.shape) | np.asarray(valid & (errors == 0))).reshape(logits.shape)


def _binary_or_ignored(labels, *, ignore_index=-100, **_):
    y = jnp.asarray(labels)
    return (y == 0) | (y == 1) | (y == ignore_index)


def _saturated_logits(s):
    """Logits of magnitude 1e4 with the labels' signs: every error 1 - z s far below 0."""
    z, labels = s.args
    return Sample((_sampling.saturated_signs(labels == 1, z.dtype), labels), s.kwargs)


@loss(constraints=[_domain.Constraint(
          "labels", "0 or 1 (or `ignore_index`)",
          lambda a: _binary_or_ignored(a["labels"], ignore_index=a["ignore_index"]))],
      nonnegative=True, perfect=_saturated_logits,
      family="segmentation", elementwise=False, has_hess_diag=False,
      formula=r"\ell = \sum_k \max(e_{\pi_k}, 0)\, g_k(\pi),\ e = 1 - z s,\ s = 2y - 1"
              r"\ \text{sorted decreasingly}",
      sampler=_hinge_sample,
      kinks=[Kink("an error 1 - z s == 0 (the hinge), or tied errors within a sorted row "
                  "(an image, or the batch)",
                  "the hinge: half its slope (midpoint of 0 and the Lovász weight); tied "
                  "pixels: the average of the Lovász gradient over the orders of the tie "
                  "(for two, the midpoint of the one-sided derivatives)", _hinge_kinks)],
      references=_REFERENCES)
def lovasz_hinge(logits, labels, *, per_image=True, ignore_index=-100):
    r"""Binary Lovász hinge loss on logits (the reference's ``lovasz_hinge``).

    Errors are hinge margins :math:`e = 1 - z s` with signs :math:`s = 2y - 1`; sorted
    decreasingly, their positive parts are weighted by the Lovász gradient of the Jaccard loss
    of the foreground (module docstring).

    Args:
      logits: (N, *spatial) real scores, one foreground class.
      labels: (N, *spatial) labels 0 or 1 (integer or float), or ``ignore_index``.
      per_image: sort each image's pixels on its own (the reference's default); else the
        whole batch's pixels at once.
      ignore_index: label of pixels left out.

    Elements: the images, shape (N,), with ``per_image=True`` (the mean is the reference's
    mean over images); otherwise the batch is one element, shape (). Images (or a batch)
    whose pixels are all ignored are masked out (the reference counts them as 0).

    Derivative w.r.t. :math:`z_i`: :math:`-s_i w_i \mathbb{1}[e_i > 0]`, w the Lovász
    weights (ties averaged), with 1/2 for the indicator at :math:`e_i = 0`.
    """
    name = "lovasz_hinge"
    if not per_image:                   # one sort over the batch: every pixel on each device
        logits, labels = gathered(logits, jnp.asarray(labels))
    z, fg, bg, signs = _hinge_layout(name, logits, labels, ignore_index)
    errors = 1 - z * signs
    rows = (_hinge_rows(errors, per_image), _hinge_rows(fg, per_image),
            _hinge_rows(bg, per_image))
    weights = _lovasz_weights(*rows).reshape(z.shape)
    slope = -signs * weights * hinge_slope(errors)
    contribution = jnp.maximum(errors, 0) * weights
    valid = fg + bg > 0
    if per_image:
        value, mask = jnp.sum(contribution, axis=1), jnp.any(valid, axis=1)
        expand = lambda coef: coef[:, None]                   # noqa: E731
        reduce_rows = lambda x: jnp.sum(x, axis=1)            # noqa: E731
    else:
        value, mask = jnp.sum(contribution), jnp.any(valid)
        expand = lambda coef: coef                            # noqa: E731
        reduce_rows = jnp.sum

    def vjp(coef):
        return (expand(coef) * slope).reshape(logits.shape)

    def jvp(tangent):
        return reduce_rows(slope * tangent.reshape(z.shape))

    return Terms(value, grad=None, vjp=vjp, jvp=jvp, mask=mask)
