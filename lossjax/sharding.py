"""Placing losses' inputs and training data on a device mesh (``jax.sharding``).

Everything here is placement: the computation stays JAX's own (GSPMD under ``jit``), so a loss
gives the same value on a sharded batch as on one device, to round-off.

    mesh = lj.sharding.batch_mesh()                        # every device, one axis "batch"
    args, kwargs = lj.sharding.shard_inputs(lj.cross_entropy, mesh, logits, labels)
    jax.jit(jax.value_and_grad(lj.cross_entropy))(*args, **kwargs)

On the CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (set before JAX starts)
simulates 8 devices.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["axis_size", "batch_mesh", "batch_sharding", "is_explicit", "place_params",
           "replicate", "shard_batch", "shard_inputs"]


def batch_mesh(devices=None, axis: str = "batch") -> Mesh:
    """A one-axis mesh over ``devices`` (default: all of ``jax.devices()``), axis type Auto
    (GSPMD chooses the shardings of intermediates)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (axis,), axis_types=(jax.sharding.AxisType.Auto,))


def _axis(who, mesh, axis):
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{who}: `mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    if axis is None:
        return mesh.axis_names[0]
    names = axis if isinstance(axis, tuple) else (axis,)
    unknown = [a for a in names if a not in mesh.axis_names]
    if unknown:
        raise ValueError(f"{who}: mesh axis {unknown[0]!r} is not in the mesh (axes "
                         f"{mesh.axis_names}).")
    return axis


def axis_size(mesh: Mesh, axis) -> int:
    """Number of devices along ``axis`` (a name or a tuple of names) of ``mesh``."""
    names = axis if isinstance(axis, tuple) else (axis,)
    return math.prod(mesh.shape[a] for a in names)


def is_explicit(mesh: Mesh, axis) -> bool:
    """Whether the mesh axis ``axis`` (or every one of a tuple) has type Explicit."""
    names = axis if isinstance(axis, tuple) else (axis,)
    types = dict(zip(mesh.axis_names, mesh.axis_types))
    return all(types[a] == jax.sharding.AxisType.Explicit for a in names)


def place_params(params, mesh: Mesh, specs=None, *, who: str = "lj.sharding.place_params"):
    """``params`` on ``mesh``: replicated, or split as ``specs`` says: a PartitionSpec per
    leaf, or a pytree prefix of ``params`` with PartitionSpecs (None: replicated)."""
    if specs is None:
        return replicate(params, mesh)
    try:
        shardings = jax.tree_util.tree_map(
            lambda spec, sub: jax.tree_util.tree_map(
                lambda _: NamedSharding(mesh, PartitionSpec() if spec is None else spec), sub),
            specs, params, is_leaf=lambda x: x is None or isinstance(x, PartitionSpec))
    except ValueError as e:
        raise ValueError(f"{who}: `param_specs` must be a pytree prefix of `params` with "
                         f"PartitionSpecs (or None) at its leaves: {e}") from None
    try:
        return jax.tree_util.tree_map(jax.device_put, params, shardings)
    except ValueError as e:
        raise ValueError(f"{who}: `param_specs` do not fit `params`: {e}") from None


def batch_sharding(mesh: Mesh, axis=None) -> NamedSharding:
    """Axis 0 split over the mesh axis ``axis`` (default: the mesh's first axis), the rest
    replicated."""
    return NamedSharding(mesh, PartitionSpec(_axis("lj.sharding.batch_sharding", mesh, axis)))


def replicate(tree, mesh: Mesh):
    """Every array of ``tree`` copied to every device of ``mesh``."""
    full = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, full), tree)


def shard_batch(tree, mesh: Mesh, axis=None, *, who: str = "lj.sharding.shard_batch",
                what: str = "tree"):
    """Every array of ``tree`` split along its axis 0 over the mesh axis ``axis``.

    Axis 0 must be divisible by the number of devices along ``axis`` (pad the batch, or mask
    the padding with ``where=``, otherwise)."""
    axis = _axis(who, mesh, axis)
    size = axis_size(mesh, axis)
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape = np.shape(x)
        if not shape or shape[0] % size:
            raise ValueError(
                f"{who}: `{what}{jax.tree_util.keystr(path)}` has shape {tuple(shape)}; its "
                f"axis 0 must be divisible by the {size} devices of mesh axis {axis!r}. Pad the "
                f"batch to a multiple of {size} (masking the padding) or use fewer devices.")
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)


def shard_inputs(loss, mesh: Mesh, *args, axis=None, **kwargs):
    """``(args, kwargs)`` for ``loss(*args, **kwargs)`` placed on ``mesh``: the loss's
    ``batch_args`` (and ``weights``/``where``) split along their axis 0 over ``axis``, every
    other array replicated. An argument of a ``batch_args`` name that does not carry the
    batch (a broadcast scalar or row) is replicated."""
    who = f"lj.sharding.shard_inputs({loss.name})"
    axis = _axis(who, mesh, axis)
    names = list(loss._signature.parameters)
    reduction_kwargs = {k: kwargs[k] for k in ("reduction", "weights", "where") if k in kwargs}
    bound = loss._bind(args, {k: v for k, v in kwargs.items() if k not in reduction_kwargs})
    first = bound.arguments[loss.batch_args[0]]
    n = np.shape(first)[0] if np.ndim(first) else None
    def place(name, value):
        if not hasattr(value, "shape"):
            return value
        if loss._carries_batch(name, value, n) or (
                name in ("weights", "where") and np.ndim(value) and np.shape(value)[0] == n):
            return shard_batch(value, mesh, axis, who=who, what=name)
        return replicate(value, mesh)
    return (tuple(place(names[i], a) for i, a in enumerate(args)),
            {k: place(k, v) for k, v in kwargs.items()})
