"""The `lossjax` command.

    lossjax catalog [--markdown]
    lossjax audit [NAME ...] [--dtype float32 float64] [--kind generic edge]
                  [--json PATH] [--markdown PATH]
    lossjax audit --target pkg.module:fn | path/to/file.py:fn [--grad ...] [--hess ...]
                  (--shape 8 [--shape 8] | --args inputs.npz) [--argnums 0]
                  [--dtype float64] [--seed 0] [--rtol R] [--atol A]
    lossjax lab [NAME ...] [--experiments DIR] [--full] [--out DIR] [--device cpu|gpu|tpu]
                [--seed N] [--force]

Also `python -m lossjax ...`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

from lossjax._compile import classic_cpu_emitters
from lossjax._console import progress_bar


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's own mistakes (unknown options, bad choices) in one line too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _catalog(args) -> int:
    import lossjax as lj
    if args.markdown:
        print("| loss | family | formula | kinks |")
        print("|---|---|---|---|")
        for loss in lj.catalog():
            kinks = "; ".join(f"{k.where}: {k.subgradient}" for k in loss.kinks) or "none"
            cells = [f"`{loss.name}`", loss.family, f"${loss.formula}$", kinks]
            print("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return 0
    for loss in lj.catalog():
        print(f"{loss.name:34s} {loss.family:15s} {loss.formula}")
    return 0


def _compilation_cache():
    """Keep compiled audit kernels on disk between runs (LOSSJAX_CACHE overrides the folder,
    an empty value turns it off): a second `lossjax lab` skips most of the compiling."""
    import os
    import jax
    folder = os.environ.get("LOSSJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                          "lossjax", "jax"))
    if folder:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _progress(total):
    bar = progress_bar(total, "loss")
    if bar is None:                       # no tqdm: one line per loss on stderr
        done = [0]

        def line(name):
            done[0] += 1
            print(f"  [{done[0]}/{total}] {name}", file=sys.stderr, flush=True)
        return line, lambda: None
    return (lambda name: (bar.set_description(name), bar.update())), bar.close


def _write(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")


def _audit_catalog(args) -> int:
    import json
    _compilation_cache()
    import lossjax as lj
    from lossjax import audit
    try:
        losses = [lj.get(n) for n in args.names] if args.names else lj.catalog()
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    start = time.perf_counter()
    progress, close = _progress(len(losses))
    rows = audit.catalog(losses, dtypes=args.dtype or audit._catalog.DTYPES,
                         kinds=args.kind or audit._catalog.KINDS, progress=progress)
    close()
    table = audit.to_markdown(rows)
    failed = [r for r in rows if not r.ok]
    summary = (f"{len(rows)} audits of {len(losses)} losses in {time.perf_counter() - start:.1f} s: "
               f"{len(rows) - len(failed)} pass" + (f", {len(failed)} FAIL" if failed else ""))
    print(table)
    print("\n" + summary)
    for r in failed:
        print("\n" + r.report.to_markdown())
    if args.markdown:
        _write(args.markdown, table + "\n\n" + summary + "".join(
            "\n\n" + r.report.to_markdown() for r in failed))
    if args.json:
        _write(args.json, json.dumps([{"loss": r.loss, "dtype": r.dtype, "kind": r.kind,
                                       "ok": r.ok, "report": r.report.to_dict()} for r in rows],
                                     indent=2, default=str))
    return 1 if failed else 0


def _import_file(path: str, option: str, spec: str):
    """A module from a file path (``path/to/file.py``), imported under its file name."""
    import importlib.util
    import os
    if not os.path.isfile(path):
        raise UsageError(f"{option} {spec!r}: no such file {path!r}.")
    name = os.path.splitext(os.path.basename(path))[0]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules.setdefault(name, module)
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:               # its own sibling imports
        sys.path.insert(0, folder)
    loader_spec.loader.exec_module(module)
    return module


def _resolve(spec: str, option: str):
    import os
    module, sep, attr = spec.rpartition(":")
    if not sep or not module or not attr:
        raise UsageError(f"{option} {spec!r}: expected 'package.module:function' or "
                         f"'path/to/file.py:function'.")
    try:
        if module.endswith(".py") or os.sep in module:
            obj = _import_file(module, option, spec)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())      # modules in the current folder
            obj = importlib.import_module(module)
    except UsageError:
        raise
    except ImportError as e:
        raise UsageError(f"{option} {spec!r}: cannot import {module!r} ({_first_line(e)}).") \
            from None
    except Exception as e:           # the module itself fails: a syntax error, an exception
        raise UsageError(f"{option} {spec!r}: importing {module!r} failed with "
                         f"{type(e).__name__}: {_first_line(e)}.") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{option} {spec!r}: {module!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{option} {spec!r}: {attr!r} is not callable.")
    return obj


def _first_line(error) -> str:
    """The first non-empty line of an exception's message (JAX's run to many lines)."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()),
                type(error).__name__)


def _shape(text: str):
    try:
        shape = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
        if any(d < 0 for d in shape):
            raise ValueError
        return shape
    except ValueError:
        raise UsageError(f"--shape {text!r}: expected comma-separated sizes such as 8 or 4,3.") \
            from None


_TARGET_ONLY = ("grad", "hess", "shape", "args", "argnums", "seed", "rtol", "atol")


def _load_args(path, fn):
    """The positional arguments saved in ``path`` (.npz): ``np.savez(path, x, y)`` gives them
    in order; named arrays (``np.savez(path, predictions=x, labels=y)``) are put in the
    order of ``fn``'s parameters."""
    import inspect
    import numpy as np
    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"--args {path!r}: cannot read it as .npz ({_first_line(e)}).") \
            from None
    names = list(data.files)
    if all(n.startswith("arr_") and n[4:].isdigit() for n in names):
        return [data[n] for n in sorted(names, key=lambda n: int(n[4:]))]
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = names
    unknown = [n for n in names if n not in params]
    if unknown:
        raise UsageError(f"--args {path!r}: arrays {unknown} match no parameter of the target "
                         f"({', '.join(params)}).")
    order = [p for p in params if p in names]
    if order != params[:len(order)]:
        missing = params[:len(order)]
        raise UsageError(f"--args {path!r}: has {order}; the target's leading parameters are "
                         f"{missing}.")
    return [data[n] for n in order]


def _outside_domain(fn, arrays) -> list:
    """For a target that declares value constraints (a catalogue Loss): the violated ones."""
    constraints = getattr(fn, "constraints", ())
    if not constraints:
        return []
    import numpy as np
    try:
        bound = fn._bind(tuple(arrays), {}).arguments
    except Exception:                    # noqa: BLE001 - no binding, no domain to check
        return []
    out = []
    for c in constraints:
        ok = c.holds(bound)
        if ok is not None and not bool(np.all(np.asarray(ok))):
            expected = c.expected(bound) if callable(c.expected) else c.expected
            out.append(f"`{c.argument}` must be {expected} at "
                       f"{int(np.size(ok) - np.sum(np.asarray(ok)))} of {np.size(ok)} entries")
    return out


def _audit_target(args) -> int:
    import jax
    import jax.numpy as jnp
    from lossjax import audit
    if args.names:
        raise UsageError("give either loss names or --target, not both.")
    if not args.shape and not args.args:
        raise UsageError("--target needs its inputs: one --shape per positional argument "
                         "(e.g. --shape 8), or --args inputs.npz.")
    if args.shape and args.args:
        raise UsageError("give either --shape or --args, not both.")
    fn = _resolve(args.target, "--target")
    grad = _resolve(args.grad, "--grad") if args.grad else None
    hess = _resolve(args.hess, "--hess") if args.hess else None
    dtypes = args.dtype or ["float64"]
    if len(dtypes) != 1:
        raise UsageError("--target audits one dtype at a time.")
    argnums = args.argnums or 0
    with audit._oracle.x64():
        if args.args:
            arrays = [jnp.asarray(a) for a in _load_args(args.args, fn)]
            where = f"the inputs in {args.args}"
        else:
            keys = jax.random.split(jax.random.PRNGKey(args.seed or 0), len(args.shape))
            arrays = [jax.random.normal(k, _shape(s), jnp.dtype(dtypes[0]))
                      for k, s in zip(keys, args.shape)]
            where = f"shapes {args.shape}"
            for problem in _outside_domain(fn, arrays):
                print(f"lossjax audit: warning: the generated inputs (standard normal) fall "
                      f"outside {args.target}'s declared domain: {problem}; give your own "
                      f"with --args inputs.npz", file=sys.stderr)
        try:
            report = audit.check(fn, *arrays, grad=grad, hess=hess, argnums=argnums,
                                 rtol=args.rtol or 0.0, atol=args.atol or 0.0, name=args.target)
        except Exception as e:       # shapes that do not fit the function, or it raises
            raise UsageError(f"auditing {args.target} on {where} failed with "
                             f"{type(e).__name__}: {_first_line(e)}") from None
    print(report.to_markdown())
    if args.markdown:
        _write(args.markdown, report.to_markdown())
    if args.json:
        report.to_json(args.json)
    return 0 if report.ok else 1


def _lab(args) -> int:
    """Run the experiments (all by default) and write OUT/REPORT.md; exit 1 if any raised."""
    classic_cpu_emitters()
    _compilation_cache()
    import jax
    from lossjax import lab
    try:
        experiments = lab.Experiments(args.experiments)
        experiments.check(args.names)
    except lab.LabError as e:
        raise UsageError(str(e)) from None
    names = args.names or list(experiments.names)
    try:
        device = jax.devices(args.device)[0]
    except RuntimeError as e:
        raise UsageError(f"--device {args.device}: no such JAX backend here "
                         f"({str(e).splitlines()[0]}).") from None
    print(f"lossjax lab: {len(names)} experiment(s), "
          f"{'full' if args.full else 'quick'} configuration, seed {args.seed}, on {device}; "
          f"results in {args.out}/", flush=True)
    start = time.perf_counter()
    try:
        with jax.default_device(device):
            records, failures = lab.run_lab(
                names, experiments=experiments, jobs=args.jobs, full=args.full, seed=args.seed, out=args.out, force=args.force,
                echo=lambda line: print(line, flush=True))
    except lab.LabError as e:
        raise UsageError(str(e)) from None
    print("\n| experiment | verdict | key number |\n|---|---|---|")
    for rec in records:
        r = rec["result"]
        print(f"| {r.title} | {r.verdict} | {r.key_number} |")
    print(f"\n{len(records)} experiment(s) in {time.perf_counter() - start:.0f} s; report: "
          f"{args.out}/REPORT.md" + (f"; {len(failures)} FAILED: "
                                    + ", ".join(n for n, _ in failures) if failures else ""))
    return 1 if failures else 0


def _audit(args) -> int:
    if args.target:
        return _audit_target(args)
    given = [f"--{k}" for k in _TARGET_ONLY if getattr(args, k) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} audit your own function: add --target "
                         f"module:fn or path/to/file.py:fn (without --target, `lossjax audit` "
                         f"audits the catalogue).")
    return _audit_catalog(args)


def main(argv=None) -> int:
    parser = _Parser(prog="lossjax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("catalog", help="list the catalogue")
    p.add_argument("--markdown", action="store_true", help="a markdown table with formulas")
    p.set_defaults(run=_catalog)
    p = sub.add_parser("audit", help="audit catalogue losses, or your own function")
    p.add_argument("names", nargs="*", help="catalogue losses (default: all)")
    p.add_argument("--dtype", nargs="+", choices=["float16", "bfloat16", "float32", "float64"])
    p.add_argument("--kind", nargs="+", choices=["generic", "edge"])
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--markdown", metavar="PATH")
    p.add_argument("--target", metavar="MODULE:FN", help="a scalar function to audit")
    p.add_argument("--grad", metavar="MODULE:FN", help="its hand-derived gradient")
    p.add_argument("--hess", metavar="MODULE:FN", help="its hand-derived Hessian diagonal")
    p.add_argument("--shape", action="append", help="shape of each positional argument")
    p.add_argument("--args", metavar="NPZ",
                   help="audit at these inputs (np.savez: in order, or named after the "
                        "target's parameters; integer labels included)")
    p.add_argument("--argnums", type=int, default=None, help="the audited argument (default 0)")
    p.add_argument("--seed", type=int, default=None, help="seed of the generated inputs")
    p.add_argument("--rtol", type=float, default=None, help="accepted relative error")
    p.add_argument("--atol", type=float, default=None, help="accepted absolute error")
    p.set_defaults(run=_audit)
    p = sub.add_parser("lab", help="run the experiments and write the lab report")
    p.add_argument("names", nargs="*", help="experiments (default: all, in order)")
    p.add_argument("--experiments", default="experiments", metavar="DIR",
                   help="the folder of experiment modules (default: ./experiments)")
    p.add_argument("--full", action="store_true", help="the longer configuration")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--device", default="cpu", help="JAX backend: cpu (default), gpu, tpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=None,
                   help="experiments run at once (default: 2 on a machine with 2+ CPUs)")
    p.add_argument("--force", action="store_true",
                   help="re-run experiments even when a result for this config and code exists")
    p.set_defaults(run=_lab)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        print(f"lossjax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
