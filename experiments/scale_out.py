"""Sharding a batch over devices changes nothing but float32 round-off.

Three measurements on a device mesh (8 simulated CPU devices when the machine has fewer than
two accelerators: this module then re-runs itself in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``):

1. every catalogue loss, its inputs split along the batch axis (``lj.sharding.shard_inputs``)
   vs the same inputs on one device, under ``jit``: value and ``jax.grad`` for the mean and
   for a weighted mean with half the batch masked out (whole devices see no element that
   counts), and the hand-derived ``.grad``; on an Auto mesh (GSPMD) and an Explicit one;
2. ``lj.train.fit`` / ``fit_many`` data-parallel (``mesh=``) vs one device: the histories;
3. ``lj.linear_cross_entropy`` vocabulary-parallel (tokens over "data", the vocabulary over
   "model"): value and gradients vs the dense cross-entropy on one device, and every buffer
   of the compiled per-device program, to show that no full-vocabulary logits or weight
   appear;
4. several hosts: 2 processes of 4 CPU devices each, joined by ``jax.distributed`` (gloo
   collectives) into one 8-device mesh: three losses and a minibatch fit vs one device.

    python experiments/scale_out.py --json OUT.json [--full] [--seed N]
    python experiments/scale_out.py --worker I --port P --json OUT.json   # one host
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

DEVICES = 8
TOLERANCE = 1e-5      # relative to the largest reference entry; float32 eps is 1.2e-7


def _relative(got, ref):
    import jax
    errs = [float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                  / max(float(np.max(np.abs(np.asarray(b, np.float64)))), 1e-30))
            for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref))
            if np.size(b)]
    return max(errs, default=0.0)


# -- 1. the catalogue ------------------------------------------------------------------------

def _catalogue_case(loss, key, batch):
    """(function of (args, kwargs, weights, where) to jit, args, array kwargs, weights,
    where)."""
    import jax
    import jax.numpy as jnp
    s = loss.sample(key, batch=batch)
    argnums = tuple(i for i, a in enumerate(s.args) if jnp.issubdtype(a.dtype, jnp.floating))
    static = {k: v for k, v in s.kwargs.items() if not hasattr(v, "shape")}
    dynamic = {k: v for k, v in s.kwargs.items() if hasattr(v, "shape")}
    shape = jax.eval_shape(lambda *a: loss(*a, reduction="none", **s.kwargs), *s.args).shape
    k_w, k_m = jax.random.split(jax.random.fold_in(key, 1))
    weights = jax.random.uniform(k_w, shape, minval=0.1, maxval=2.0)
    first_half = (jnp.arange(shape[0]) < shape[0] // 2).reshape((-1,) + (1,) * (len(shape) - 1))
    where = ~first_half & jax.random.bernoulli(k_m, 0.7, shape)

    def f(args, kwargs, weights, where):
        kwargs = {**kwargs, **static}
        out = {"mean": jax.value_and_grad(lambda *a: loss(*a, **kwargs), argnums)(*args),
               "weighted, masked": jax.value_and_grad(
                   lambda *a: loss(*a, **kwargs, weights=weights, where=where), argnums)(*args)}
        if loss.has_grad:
            out[".grad"] = loss.grad(*args, **kwargs, weights=weights, where=where)
        return out
    return f, s.args, dynamic, weights, where


def catalogue(meshes, seed, batch, losses=None):
    """{loss: {mesh kind: max relative difference}} over every catalogue loss (or
    ``losses``)."""
    import jax
    import lossjax as lj
    rows = {}
    for i, loss in enumerate(lj.catalog()):
        if losses is not None and loss.name not in losses:
            continue
        f, args, kwargs, weights, where = _catalogue_case(
            loss, jax.random.fold_in(jax.random.PRNGKey(seed), i), batch)
        f = jax.jit(f)
        ref = f(args, kwargs, weights, where)
        rows[loss.name] = {}
        for kind, mesh in meshes.items():
            s_args, s_kwargs = lj.sharding.shard_inputs(loss, mesh, *args, **kwargs,
                                                        weights=weights, where=where)
            s_w, s_m = s_kwargs.pop("weights"), s_kwargs.pop("where")
            rows[loss.name][kind] = _relative(f(s_args, s_kwargs, s_w, s_m), ref)
    return rows


# -- 2. training loops -----------------------------------------------------------------------

def _classifier(p, batch):
    import lossjax as lj
    hidden = (batch["x"] @ p["w1"]).clip(0.0)          # a ReLU layer, then softmax regression
    return lj.cross_entropy(hidden @ p["w2"] + p["b"], batch["y"])


def training(mesh, seed, steps):
    """Histories of fit / fit_many on ``mesh`` vs one device."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P
    import lossjax as lj
    k_data, k_init = jax.random.split(jax.random.PRNGKey(seed))
    ds = lj.data.imbalanced_multiclass(k_data, 128, 6, 4)
    data = {"x": ds.data["x"], "y": ds.data["y"]}
    params = {"w1": 0.5 * jax.random.normal(k_init, (6, 16)), "w2": jnp.zeros((16, 4)),
              "b": jnp.zeros(4)}
    rows = []

    def compare(label, single, sharded, **kw):
        h1, h8 = single.history.numpy(), sharded.history.numpy()
        rows.append({"run": label, "loss": _relative(h8["loss"], h1["loss"]),
                     "grad_norm": _relative(h8["grad_norm"], h1["grad_norm"]),
                     "update_norm": _relative(h8["update_norm"], h1["update_norm"]),
                     "params": _relative(sharded.params, single.params), **kw})
    for optimizer, batch_size in (("adam", None), ("adam", 32), ("momentum", 16),
                                  ("lbfgs", None)):
        kw = dict(batch_size=batch_size, on_nonfinite="stop")
        compare(f"fit {optimizer}, batch {batch_size or 'full'}",
                lj.train.fit(_classifier, params, data, optimizer, steps, **kw),
                lj.train.fit(_classifier, params, data, optimizer, steps, mesh=mesh, **kw),
                line_search=optimizer == "lbfgs")
    sweep = {"learning_rate": jnp.asarray([0.03, 0.1, 0.3])}
    compare("fit_many sgd × 3 learning rates, batch 32",
            lj.train.fit_many(_classifier, params, data, "sgd", steps, hparams=sweep,
                              batch_size=32),
            lj.train.fit_many(_classifier, params, data, "sgd", steps, hparams=sweep,
                              batch_size=32, mesh=mesh), line_search=False)
    devices = np.asarray(mesh.devices).reshape(2, -1)
    mesh2d = jax.sharding.Mesh(devices, ("batch", "model"),
                               axis_types=(jax.sharding.AxisType.Auto,) * 2)
    compare("fit adam, w1/w2 split over 'model'",
            lj.train.fit(_classifier, params, data, "adam", steps),
            lj.train.fit(_classifier, params, data, "adam", steps, mesh=mesh2d,
                         param_specs={"w1": P(None, "model"), "w2": P("model", None),
                                      "b": None}), line_search=False)
    return rows


# -- 3. vocabulary-parallel fused cross-entropy -----------------------------------------------

_SHAPE = re.compile(r"\b(?:f64|f32|bf16|f16|s32|s64|u32|pred)\[([0-9,]*)\]")


def _buffers(compiled):
    """Shapes of every array in the compiled (per-device, partitioned) program."""
    return [tuple(int(d) for d in m.split(",") if d) for m in _SHAPE.findall(compiled.as_text())]


def vocab_parallel(devices, seed, sizes):
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import lossjax as lj
    n, d, v = sizes
    dp = 2
    tp = len(devices) // dp
    mesh = Mesh(np.asarray(devices).reshape(dp, tp), ("data", "model"),
                axis_types=(jax.sharding.AxisType.Auto,) * 2)
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    hidden = jax.random.normal(k[0], (n, d))
    weight = jax.random.normal(k[1], (d, v)) / math.sqrt(d)
    bias = 0.1 * jax.random.normal(k[2], (v,))
    labels = jax.random.randint(k[3], (n,), 0, v).at[1].set(-100)
    options = dict(label_smoothing=0.1, z_loss=1e-4, token_block=16, vocab_block=64)

    def dense(h, w, b):              # the same loss from the full logits, on one device
        z, valid = h @ w + b, labels >= 0
        z_term = jnp.sum(jnp.where(valid, jax.nn.logsumexp(z, axis=-1) ** 2, 0.0))
        return lj.cross_entropy(z, labels, label_smoothing=0.1) + 1e-4 * z_term / jnp.sum(valid)
    reference = jax.jit(jax.value_and_grad(dense, argnums=(0, 1, 2)))(hidden, weight, bias)

    placed = [jax.device_put(x, NamedSharding(mesh, spec)) for x, spec in
              ((hidden, P("data", None)), (weight, P(None, "model")), (bias, P("model")))]
    y = jax.device_put(labels, NamedSharding(mesh, P("data")))
    rows = []
    for label, extra in (("mesh=, token_axis='data', vocab_axis='model'",
                          dict(mesh=mesh, token_axis="data", vocab_axis="model")),
                         ("no mesh= (GSPMD alone)", {})):
        fn = jax.jit(jax.value_and_grad(
            lambda h, w, b, y: lj.linear_cross_entropy(h, w, y, bias=b, **options, **extra),
            argnums=(0, 1, 2)))
        got = fn(*placed, y)
        compiled = fn.lower(*placed, y).compile()
        shapes = _buffers(compiled)
        largest = max(shapes, key=lambda s: math.prod(s))
        memory = compiled.memory_analysis()
        rows.append({
            "call": label, "relative_difference": _relative(got, reference),
            "largest_buffer": list(largest), "largest_buffer_elements": math.prod(largest),
            "full_vocabulary_buffers": sum(v in s for s in shapes),
            "temp_bytes": getattr(memory, "temp_size_in_bytes", None),
            "gradient_shardings": [str(g.sharding.spec) for g in got[1]]})
    return {"mesh": {"data": dp, "model": tp}, "n": n, "d": d, "v": v,
            "full_logits_elements": n * v, "weight_elements": d * v,
            "weight_shard_elements": d * v // tp, "rows": rows}


# -- 4. several processes (hosts) -------------------------------------------------------------

PROCESSES = 2
MULTI_LOSSES = ("cross_entropy", "ntxent", "linear_cross_entropy")


def _worker(process_id, port, path, seed):
    """One of PROCESSES processes with DEVICES // PROCESSES CPU devices each, joined by
    jax.distributed into one mesh over all of them (CPU collectives: gloo): each loss and fit
    on the global mesh vs the same call on this process's first device."""
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=PROCESSES,
                               process_id=process_id)
    from jax.sharding import NamedSharding, PartitionSpec as P
    import lossjax as lj
    mesh = lj.sharding.batch_mesh()
    replicated = NamedSharding(mesh, P())
    out = {"processes": jax.process_count(), "devices": jax.device_count(),
           "local_devices": jax.local_device_count(), "losses": {}}
    for i, name in enumerate(MULTI_LOSSES):
        loss = lj.get(name)
        f, args, kwargs, weights, where = _catalogue_case(
            loss, jax.random.fold_in(jax.random.PRNGKey(seed), i), 16)
        ref = jax.jit(f)(args, kwargs, weights, where)
        s_args, s_kwargs = lj.sharding.shard_inputs(loss, mesh, *args, **kwargs,
                                                    weights=weights, where=where)
        s_w, s_m = s_kwargs.pop("weights"), s_kwargs.pop("where")
        # gathered onto every device so that each process can read the whole result
        got = jax.jit(f, out_shardings=replicated)(s_args, s_kwargs, s_w, s_m)
        out["losses"][name] = _relative(got, ref)
    k_data, k_init = jax.random.split(jax.random.PRNGKey(seed))
    ds = lj.data.imbalanced_multiclass(k_data, 128, 6, 4)
    data = {"x": ds.data["x"], "y": ds.data["y"]}
    params = {"w1": 0.5 * jax.random.normal(k_init, (6, 16)), "w2": jax.numpy.zeros((16, 4)),
              "b": jax.numpy.zeros(4)}
    single = lj.train.fit(_classifier, params, data, "adam", 30, batch_size=32)
    global_ = lj.train.fit(_classifier, params, data, "adam", 30, batch_size=32, mesh=mesh)
    out["fit"] = _relative(global_.history.numpy(), single.history.numpy())
    if process_id == 0:
        with open(path + ".tmp", "w") as f:
            json.dump(out, f)
        os.replace(path + ".tmp", path)
    jax.distributed.shutdown()


def multi_process(seed: int) -> dict:
    """Run _worker in PROCESSES local processes; its figures, or why it could not run."""
    import socket
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES // PROCESSES}")
    env.pop("JAX_ENABLE_X64", None)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "multi.json")
        workers = [subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", str(i),
             "--port", str(port), "--json", path, "--seed", str(seed)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for i in range(PROCESSES)]
        try:
            errors = [w.communicate(timeout=300)[1] for w in workers]
        except subprocess.TimeoutExpired:
            for w in workers:
                w.kill()
            return {"ran": False, "why": "the processes did not finish in 300 s"}
        if any(w.returncode for w in workers) or not os.path.exists(path):
            last = next((e for w, e in zip(workers, errors) if w.returncode), errors[0])
            return {"ran": False, "why": last.strip().splitlines()[-1] if last.strip()
                    else "no result"}
        with open(path) as f:
            return {"ran": True, **json.load(f)}


# -- the experiment --------------------------------------------------------------------------

def measure(full: bool, seed: int) -> dict:
    """Every figure of the experiment, on this process's devices (at least two)."""
    import jax
    import lossjax as lj
    devices = jax.devices()
    count = len(devices)
    batch = 16 if 16 % count == 0 else 2 * count
    auto = lj.sharding.batch_mesh(devices)
    meshes = {"auto": auto}
    if full:
        meshes["explicit"] = jax.sharding.Mesh(
            np.asarray(devices), ("batch",), axis_types=(jax.sharding.AxisType.Explicit,))
    start = time.perf_counter()
    out = {"devices": count, "platform": devices[0].platform, "batch": batch,
           "catalogue": catalogue(meshes, seed, batch)}
    out["training"] = training(auto, seed, 60 if full else 30)
    out["vocab_parallel"] = vocab_parallel(
        devices, seed, (256, 64, 4000) if full else (64, 32, 1000))
    out["seconds"] = time.perf_counter() - start
    return out


def _in_subprocess(full: bool, seed: int) -> dict:
    """``measure`` in a fresh Python with 8 simulated CPU devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                          f" --xla_force_host_platform_device_count={DEVICES}").strip())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "scale_out.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--json", path,
               "--seed", str(seed)] + (["--full"] if full else [])
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"scale_out subprocess failed ({done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        with open(path) as f:
            return json.load(f)


def _current_devices():
    import jax
    default = jax.config.jax_default_device
    platform = default.platform if hasattr(default, "platform") else (default or None)
    return jax.devices(platform) if platform else jax.devices()


def catalogue_figure(config, rows, devices):
    """Bars of the max relative difference sharded vs unsharded, per loss and mesh kind."""
    from lossjax.lab import figure
    names = list(rows)
    kinds = list(next(iter(rows.values())))
    fig, ax, save = figure(config, "catalogue.png",
                           f"Sharded over {devices} devices vs one device",
                           "catalogue loss", "max relative difference", size=(11.0, 4.0))
    x = np.arange(len(names))
    for j, kind in enumerate(kinds):
        ax.bar(x + 0.4 * j, [max(rows[n][kind], 1e-9) for n in names], width=0.4,
               label=f"{kind} mesh")
    ax.axhline(np.finfo(np.float32).eps, color="k", lw=0.8, ls="--", label="float32 eps")
    ax.axhline(TOLERANCE, color="r", lw=0.8, ls=":", label="tolerance")
    ax.set_yscale("log")
    ax.set_xticks(x + 0.2 * (len(kinds) - 1))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    return save()


def run(config):
    from lossjax.lab import Result, markdown_table
    if len(_current_devices()) >= 2:
        m = measure(config.full, config.seed)
    else:
        m = _in_subprocess(config.full, config.seed)
    m["multi_process"] = multi_process(config.seed)
    kinds = list(next(iter(m["catalogue"].values())))
    worst = {kind: max(r[kind] for r in m["catalogue"].values()) for kind in kinds}
    failing = sorted(name for name, r in m["catalogue"].items() if max(r.values()) > TOLERANCE)
    first_order = [r for r in m["training"] if not r["line_search"]]
    fit_worst = max(max(r["loss"], r["grad_norm"], r["update_norm"], r["params"])
                    for r in first_order)
    line_search = [r for r in m["training"] if r["line_search"]]
    vp = m["vocab_parallel"]
    parallel = vp["rows"][0]
    no_full = (parallel["full_vocabulary_buffers"] == 0
               and parallel["largest_buffer_elements"] <= vp["weight_shard_elements"])
    holds = (not failing and fit_worst <= TOLERANCE and no_full
             and parallel["relative_difference"] <= TOLERANCE)
    if m["multi_process"]["ran"]:
        mp = m["multi_process"]
        holds = holds and max(max(mp["losses"].values()), mp["fit"]) <= TOLERANCE

    names = list(m["catalogue"])
    figures = [catalogue_figure(config, m["catalogue"], m["devices"])]

    by_family = {}
    import lossjax as lj
    for loss in lj.catalog():
        by_family.setdefault(loss.family, []).append(loss.name)
    table_catalogue = markdown_table(
        ["family", "losses", *[f"worst, {k} mesh" for k in kinds]],
        [[fam, len(members), *[max(m["catalogue"][n][k] for n in members) for k in kinds]]
         for fam, members in by_family.items()], fmt="{:.2g}")
    table_training = markdown_table(
        ["run", "history loss", "gradient norm", "update norm", "final params"],
        [[r["run"], r["loss"], r["grad_norm"], r["update_norm"], r["params"]]
         for r in m["training"]], fmt="{:.2g}")
    table_vocab = markdown_table(
        ["call", "difference vs dense", "largest buffer", "buffers with a full-V axis",
         "temp bytes", "gradient shardings"],
        [[r["call"], r["relative_difference"], "×".join(map(str, r["largest_buffer"])),
          r["full_vocabulary_buffers"], r["temp_bytes"], ", ".join(r["gradient_shardings"])]
         for r in vp["rows"]], fmt="{:.2g}")
    gspmd = vp["rows"][1]
    mp = m["multi_process"]
    if mp["ran"]:
        mp_worst = max(max(mp["losses"].values()), mp["fit"])
        mp_text = (f" {mp['processes']} processes × {mp['local_devices']} devices joined by "
                   f"jax.distributed (gloo): {', '.join(mp['losses'])} and a fit agree with one "
                   f"device to {mp_worst:.1e}.")
    else:
        mp_worst, mp_text = None, f" The multi-process run could not start here: {mp['why']}."
    ls = line_search[0] if line_search else None
    summary = (
        f"on {m['devices']} {m['platform']} devices, all {len(names)} catalogue losses agree "
        f"sharded vs unsharded to {max(worst.values()):.1e} (relative; value, jax.grad and "
        f".grad, plain and weighted+masked means); first-order training histories to "
        f"{fit_worst:.1e}"
        + (f" (L-BFGS: loss to {ls['loss']:.1e}, its line search amplifies round-off in the "
           f"late steps)" if ls else "")
        + f"; vocabulary-parallel linear_cross_entropy matches dense to "
        f"{parallel['relative_difference']:.1e} with its largest buffer "
        f"{'×'.join(map(str, parallel['largest_buffer']))} (the local weight shard: "
        f"{vp['weight_shard_elements']} elements; full logits {vp['full_logits_elements']}, "
        f"{parallel['full_vocabulary_buffers']} buffers with a full-vocabulary axis, GSPMD "
        f"alone: {gspmd['full_vocabulary_buffers']})."
        + mp_text + (f" Over tolerance: {', '.join(failing)}." if failing else ""))
    return Result(
        name="scale_out", title="Scale-out on a device mesh",
        claim="Splitting the batch over devices (jax.sharding, GSPMD) changes losses, "
              "gradients and training histories only by float32 round-off; the vocabulary-"
              "parallel fused cross-entropy keeps the full vocabulary off every device.",
        verdict="holds" if holds else "does not hold",
        summary=summary,
        key_number=f"max difference {max(worst.values()):.1e} (catalogue), {fit_worst:.1e} "
                   f"(training); largest fused-CE buffer {parallel['largest_buffer_elements']}"
                   f" vs {vp['full_logits_elements']} full logits",
        metrics={**m, "worst": worst, "failing": failing, "fit_worst": fit_worst,
                 "tolerance": TOLERANCE},
        tables=[table_catalogue, table_training, table_vocab] + ([markdown_table(
            [f"{mp['processes']} processes × {mp['local_devices']} devices", *mp["losses"],
             "fit adam, batch 32 (history)"],
            [["max relative difference vs one device", *mp["losses"].values(), mp["fit"]]],
            fmt="{:.2g}")] if mp["ran"] else []),
        figures=figures)


def _main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True)
    p.add_argument("--full", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", type=int, help="process id of a multi-process worker")
    p.add_argument("--port", type=int, help="coordinator port of the multi-process workers")
    args = p.parse_args(argv)
    if args.worker is not None:
        return _worker(args.worker, args.port, args.json, args.seed)
    out = measure(args.full, args.seed)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, args.json)


if __name__ == "__main__":
    _main()
