"""Run by test_lab.py in a subprocess that it interrupts: `lossjax lab` over a folder of three
fake experiments that take a while (each writes its figure, then data in steps), so that
SIGKILL or SIGINT lands at any point of a run: mid-experiment, between experiments, while a
result is moved into place or the report written.

    python tests/_lab_driver.py OUT [--force]
"""
import signal
import sys
import textwrap
from pathlib import Path

from lossjax import cli

NAMES = ("slow_a", "slow_b", "slow_c")

MODULE = textwrap.dedent('''
    import time

    from lossjax.lab import Result, figure


    def run(config):
        fig, ax, save = figure(config, "curve.png", "{name} curve", "x", "y")
        ax.plot([0, 1, 2], [0, 1, config.seed])
        saved = save()
        with open(config.out / "steps.txt", "w") as f:
            for step in range(8):
                f.write(f"{{step}}\\n")
                f.flush()
                time.sleep(0.05)
        return Result(name="{name}", title="Fake {name}", claim="a claim", verdict="holds",
                      summary="eight steps", key_number="8 steps", metrics={{"steps": 8}},
                      figures=[saved])
''')

# Ctrl-C as in a terminal (a parent that ignores SIGINT would pass that on to this process)
signal.signal(signal.SIGINT, signal.default_int_handler)
out = Path(sys.argv[1])
folder = out.parent / "slow_experiments"
folder.mkdir(exist_ok=True)
for name in NAMES:
    path = folder / f"{name}.py"
    if not path.exists():
        path.write_text(MODULE.format(name=name))
sys.exit(cli.main(["lab", *NAMES, "--experiments", str(folder), "--out", str(out),
                   *sys.argv[2:]]))
