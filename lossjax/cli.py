"""The `lossjax` command: `lossjax catalog`, `lossjax lab`."""
from __future__ import annotations

import argparse
import sys
import time

TOLERANCE = 1e-9


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


def _lab(args) -> int:
    import jax
    jax.config.update("jax_enable_x64", True)
    from lossjax import selfcheck
    start = time.perf_counter()
    print("lossjax lab: hand-derived derivatives vs JAX autodiff, float64, generic and edge samples")
    print("(largest relative difference; kink elements compared with one-sided midpoints)\n",
          flush=True)
    try:
        from tqdm import tqdm
        import lossjax as lj
        bar = tqdm(total=len(lj.catalog()), file=sys.stderr, leave=False)
        rows = selfcheck.agreement_table(progress=lambda name: (bar.set_description(name),
                                                                bar.update()))
        bar.close()
    except ImportError:
        rows = selfcheck.agreement_table()
    print(selfcheck.to_markdown(rows))
    bad = [r.name for r in rows if not r.worst() <= TOLERANCE]
    print(f"\n{len(rows)} losses audited in {time.perf_counter() - start:.1f} s; "
          f"{len(rows) - len(bad)} agree to {TOLERANCE:g}"
          + (f"; DISAGREE: {', '.join(bad)}" if bad else "."))
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lossjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("catalog", help="list the catalogue")
    p.add_argument("--markdown", action="store_true", help="a markdown table with formulas")
    p.set_defaults(run=_catalog)
    p = sub.add_parser("lab", help="audit every loss's derivatives against autodiff")
    p.set_defaults(run=_lab)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
