"""check_update: a hand-written optimizer update rule against a reference transformation."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

from lossjax.audit import _oracle
from lossjax.audit._verdict import KAPPA


@dataclasses.dataclass
class UpdateAudit:
    ok: bool
    verdict: str
    steps: int
    first_step: int | None         # 1-based step of the first divergence
    leaf: str | None               # pytree path of the first diverging leaf
    index: tuple | None
    hand: float | None
    reference: float | None
    per_step: list                 # max |hand - reference| / tolerance at each step

    def __bool__(self):
        return self.ok

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, path=None):
        text = json.dumps(self.to_dict(), indent=2, default=float)
        if path is not None:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    def to_markdown(self):
        lines = [f"### Update-rule audit: **{'PASS' if self.ok else 'FAIL'}** — {self.verdict}",
                 "", "| step | worst error / tolerance |", "|---|---|"]
        lines += [f"| {i + 1} | {v:.3g} |" for i, v in enumerate(self.per_step)]
        return "\n".join(lines)


def _transformation(rule, who):
    if hasattr(rule, "init") and hasattr(rule, "update"):
        return rule.init, rule.update
    if isinstance(rule, (tuple, list)) and len(rule) == 2 and all(map(callable, rule)):
        return rule
    raise TypeError(f"{who}: expected an optax GradientTransformation or an (init, update) "
                    f"pair of functions, got {type(rule).__name__}.")


def check_update(update_fn, reference, params, steps=10, *, key=None, grad_scale=1.0,
                 kappa=KAPPA) -> UpdateAudit:
    """Run a hand-written update rule and a reference (an optax GradientTransformation) on the
    same random gradients for ``steps`` steps and report the first step and leaf that diverge.

    ``update_fn``: an object with ``init(params)`` and ``update(grads, state, params)`` (optax
    protocol) or an ``(init, update)`` pair. Each rule updates its own parameters, so a
    divergence at step k is reported at k even though later steps inherit it. Tolerance per
    entry: ``kappa * eps * (|u_ref| + max |u_ref|) * step`` (rounding accumulates with the steps).
    """
    with _oracle.x64():
        return _check_update(update_fn, reference, params, steps, key, grad_scale, kappa)


def _check_update(update_fn, reference, params, steps, key, grad_scale, kappa):
    who = "lj.audit.check_update"
    hand_init, hand_update = _transformation(update_fn, who)
    ref_init, ref_update = _transformation(reference, who)
    key = jax.random.PRNGKey(0) if key is None else key
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [jax.tree_util.keystr(p) for p, _ in leaves]
    eps = max(float(jnp.finfo(jnp.asarray(v).dtype).eps) for _, v in leaves)
    hand_step = jax.jit(lambda g, s, p: hand_update(g, s, p))
    ref_step = jax.jit(lambda g, s, p: ref_update(g, s, p))
    p_hand, p_ref = params, params
    s_hand, s_ref = hand_init(params), ref_init(params)
    per_step, first = [], None
    for step in range(1, steps + 1):
        key, sub = jax.random.split(key)
        keys = jax.random.split(sub, len(leaves))
        grads = jax.tree_util.tree_unflatten(treedef, [
            grad_scale * jax.random.normal(k, jnp.shape(v), jnp.asarray(v).dtype)
            for k, (_, v) in zip(keys, leaves)])
        u_hand, s_hand = hand_step(grads, s_hand, p_hand)
        u_ref, s_ref = ref_step(grads, s_ref, p_ref)
        worst = 0.0
        for path, uh, ur in zip(paths, jax.tree_util.tree_leaves(u_hand),
                                jax.tree_util.tree_leaves(u_ref)):
            uh, ur = np.asarray(uh, np.float64), np.asarray(ur, np.float64)
            tol = kappa * eps * (np.abs(ur) + np.max(np.abs(ur), initial=0.0)) * step + 1e-300
            ratio = np.where(np.isfinite(uh), np.abs(uh - ur) / tol, np.inf)
            worst = max(worst, float(np.max(ratio, initial=0.0)))
            if first is None and np.any(ratio > 1):
                i = int(np.argmax(ratio))
                idx = tuple(int(k) for k in np.unravel_index(i, ur.shape)) if ur.shape else ()
                first = (step, path, idx, float(uh.ravel()[i]), float(ur.ravel()[i]))
        per_step.append(worst)
        p_hand = jax.tree_util.tree_map(lambda p, u: p + u, p_hand, u_hand)
        p_ref = jax.tree_util.tree_map(lambda p, u: p + u, p_ref, u_ref)
    if first is None:
        return UpdateAudit(True, f"the update rule matches the reference for {steps} steps",
                           steps, None, None, None, None, None, per_step)
    step, path, idx, h, r = first
    verdict = (f"diverges at step {step}, leaf {path or '(root)'}{list(idx)}: "
               f"hand-written {h:.8g} vs reference {r:.8g}")
    return UpdateAudit(False, verdict, steps, step, path, idx, h, r, per_step)
