"""The dtype matrix: value and hand-derived gradient errors of every catalogue loss in
float16, bfloat16, float32 and float64 against the float64 computation on the same inputs,
in units of each dtype's eps, next to the bound each loss declares
(lossjax/audit/_precision.py; tests/test_numerics.py enforces the bounds at seed 0).

Here the worst case over several seeds of the samplers (generic and edge inputs) is shown, so
the table also says how much room each bound leaves.

    python benchmarks/bench_precision.py [--seeds 3] [--json PATH]
"""
import argparse
import dataclasses
import json
import time

import lossjax as lj


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = [row for seed in range(args.seeds) for row in lj.audit.precision_matrix(seed=seed)]
    failing = sorted({(r.loss, r.dtype) for r in rows if not r.ok})
    print(lj.audit.precision_markdown(rows))
    print(f"\n{len(rows)} cells ({args.seeds} seeds) in {time.perf_counter() - start:.0f} s; "
          + (f"over the bound: {failing}" if failing else "every cell within its bound"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**dataclasses.asdict(r), "eps": r.eps, "ok": r.ok} for r in rows], f,
                      indent=1)


if __name__ == "__main__":
    main()
