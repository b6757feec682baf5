"""Run by test_lab.py in a subprocess that it interrupts: `lossjax lab` over three fake
experiments that take a while (each writes its figure, then data in steps), so that SIGKILL or
SIGINT lands at any point of a run: mid-experiment, between experiments, while a result is
moved into place or the report written.

    python tests/_lab_driver.py OUT [--force]
"""
import signal
import sys
import time
import types

from lossjax import cli, experiments
from lossjax.experiments import Result
from lossjax.experiments._base import figure

NAMES = ("slow_a", "slow_b", "slow_c")


def _module(name):
    def run(config):
        fig, ax, save = figure(config, "curve.png", f"{name} curve", "x", "y")
        ax.plot([0, 1, 2], [0, 1, config.seed])
        saved = save()
        with open(config.out / "steps.txt", "w") as f:
            for step in range(8):
                f.write(f"{step}\n")
                f.flush()
                time.sleep(0.05)
        return Result(name=name, title=f"Fake {name}", claim="a claim", verdict="holds",
                      summary="eight steps", key_number="8 steps", metrics={"steps": 8},
                      figures=[saved])
    return types.SimpleNamespace(run=run)


# Ctrl-C as in a terminal (a parent that ignores SIGINT would pass that on to this process)
signal.signal(signal.SIGINT, signal.default_int_handler)
experiments.NAMES = NAMES
for name in NAMES:
    sys.modules[f"lossjax.experiments.{name}"] = _module(name)
sys.exit(cli.main(["lab", *NAMES, "--out", sys.argv[1], *sys.argv[2:]]))
