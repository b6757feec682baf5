"""The audited pytree as a flat vector, and the hashable keys that let compiled kernels be
reused: auditing the same function with the same shapes again compiles nothing."""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from lossjax._compile import fast_jit


class _Flat:
    """The audited pytree as a flat vector (float64 for the oracle) and back."""

    def __init__(self, tree, who):
        pairs, self.treedef = jax.tree_util.tree_flatten_with_path(tree)
        if not pairs:
            raise ValueError(f"{who}: the audited argument has no array leaves.")
        self.paths = [jax.tree_util.keystr(p) for p, _ in pairs]
        leaves = [jnp.asarray(v) for _, v in pairs]
        for path, leaf in zip(self.paths, leaves):
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise TypeError(f"{who}: the audited argument must hold floating-point arrays; "
                                f"leaf {path or '(root)'} is {leaf.dtype}{list(leaf.shape)}. "
                                f"Choose the differentiable argument with argnums=.")
        self.leaves = leaves
        self.shapes = [leaf.shape for leaf in leaves]
        self.dtypes = [leaf.dtype for leaf in leaves]
        self.sizes = [int(np.prod(s, dtype=int)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.n = int(self.offsets[-1])
        self.eps = max(float(jnp.finfo(d).eps) for d in self.dtypes)
        self.dtype = "/".join(sorted({str(d) for d in self.dtypes}))

    def ravel(self, tree, who, what) -> np.ndarray:
        leaves = jax.tree_util.tree_leaves(tree)
        structure = jax.tree_util.tree_structure(tree)
        if structure != self.treedef or [tuple(np.shape(v)) for v in leaves] != \
                [tuple(s) for s in self.shapes]:
            raise ValueError(
                f"{who}: {what} must have the structure and shapes of the audited argument "
                f"{[tuple(s) for s in self.shapes]}; got {[tuple(np.shape(v)) for v in leaves]}.")
        return np.concatenate([np.asarray(v, np.float64).ravel() for v in leaves])

    def unravel(self, x, dtypes=None):
        """Flat vector -> pytree; leaves keep x's dtype unless ``dtypes`` are given."""
        leaves = [x[o:o + s].reshape(shape) for o, s, shape in
                  zip(self.offsets[:-1], self.sizes, self.shapes)]
        if dtypes is not None:
            leaves = [leaf.astype(d) for leaf, d in zip(leaves, dtypes)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def locate(self, i):
        leaf = int(np.searchsorted(self.offsets, i, side="right") - 1)
        index = np.unravel_index(int(i - self.offsets[leaf]), self.shapes[leaf]) \
            if self.shapes[leaf] else ()
        return self.paths[leaf], tuple(int(k) for k in index)


def _select(args, argnums):
    return args[argnums] if isinstance(argnums, int) else tuple(args[i] for i in argnums)


def _replace(args, argnums, target):
    args = list(args)
    if isinstance(argnums, int):
        args[argnums] = target
    else:
        for i, t in zip(argnums, target):
            args[i] = t
    return tuple(args)


def _is_data(arg) -> bool:
    leaves = jax.tree_util.tree_leaves(arg)
    return bool(leaves) and all(isinstance(v, (jax.Array, np.ndarray, np.generic))
                                for v in leaves)


class _Key:
    """Hashable stand-in for a static argument (by value when hashable, else by identity)."""

    def __init__(self, value):
        self.value = value
        try:
            self._hash = hash(value)
            self._by_value = True
        except TypeError:
            self._hash, self._by_value = id(value), False

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        if not isinstance(other, _Key):
            return False
        if self._by_value and other._by_value:
            return type(self.value) is type(other.value) and self.value == other.value
        return self.value is other.value


class _Bound:
    """``fn`` with its non-array arguments fixed and the audited argument replaceable.

    Hashable, so it can be a static argument of jitted kernels: auditing the same function
    with the same shapes again reuses every compiled kernel (a warm audit).
    """

    def __init__(self, fn, args, argnums, flat):
        self.fn, self.argnums, self.flat = fn, argnums, flat
        self.static = tuple((i, _Key(a)) for i, a in enumerate(args) if not _is_data(a))
        self._key = (_Key(fn), argnums, self.static, flat.treedef,
                     tuple(tuple(s) for s in flat.shapes))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Bound) and self._key == other._key

    @staticmethod
    def dynamic(args):
        return tuple(a if _is_data(a) else None for a in args)

    def args(self, dynamic, target=None):
        """The full arguments: ``dynamic`` with the static ones put back (and the audited
        argument replaced by ``target`` when given)."""
        args = list(dynamic)
        for i, key in self.static:
            args[i] = key.value
        return tuple(args) if target is None else _replace(args, self.argnums, target)

    def call(self, target, dynamic):
        return self.fn(*self.args(dynamic, target))

    def flat_call(self, x, dynamic):
        return self.call(self.flat.unravel(x), dynamic)


class _FlatCall:
    """The oracle's view: a flat vector and the dynamic arguments -> the output
    (``output="value"``), the raveled output (``"ravel"``, Jacobians) or the raveled
    autodiff gradient (``"grad"``, Hessian-vector products)."""

    def __init__(self, bound, output="value"):
        self.bound, self.output = bound, output

    def __hash__(self):
        return hash((self.bound, self.output))

    def __eq__(self, other):
        return isinstance(other, _FlatCall) and (self.bound, self.output) == \
            (other.bound, other.output)

    def __call__(self, x, dynamic):
        if self.output == "grad":
            g = jax.grad(lambda v: self.bound.flat_call(v, dynamic))(x)
            return g
        out = self.bound.flat_call(x, dynamic)
        return jnp.ravel(out) if self.output == "ravel" else out


@fast_jit(static_argnums=0)
def _compiled_call(fn_key, args):
    return fn_key.value(*args)


def _call(fn, args):
    """fn(*args), compiled once per function and shapes when every argument is an array (one
    compilation instead of one per primitive in eager mode); eager otherwise."""
    if all(_is_data(a) for a in args):
        try:
            return _compiled_call(_Key(fn), tuple(args))
        except jax.errors.JAXTypeError:      # not traceable (Python control flow on values)
            pass
    return fn(*args)


def _to_float64(tree):
    return jax.tree_util.tree_map(
        lambda v: jnp.asarray(v, jnp.float64)
        if hasattr(v, "dtype") and jnp.issubdtype(v.dtype, jnp.floating) else v, tree)



def one_hot_rows(index, n, dtype=np.int8) -> np.ndarray:
    """Unit vectors e_i for i in ``index``, as rows."""
    rows = np.zeros((len(index), n), dtype)
    rows[np.arange(len(index)), np.asarray(index)] = 1
    return rows


def custom_rules(fn, *args) -> list:
    """The custom derivative rules (custom_vjp / custom_jvp calls) that tracing
    ``fn(*args)`` meets, by name, nested jaxprs included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if "custom_vjp" in eqn.primitive.name or "custom_jvp" in eqn.primitive.name:
                found.append(str(eqn.params.get("name") or eqn.primitive.name))
            for v in eqn.params.values():
                for sub in (v if isinstance(v, (list, tuple)) else [v]):
                    if hasattr(sub, "eqns"):
                        walk(sub)
                    elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                        walk(sub.jaxpr)
    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found
