"""Running an experiment's quick configuration the way `lossjax lab` does (float32 JAX, the
suite's float64 switched off), with the checks every Result must pass."""
import json
from pathlib import Path

import jax

from lossjax.lab import VERDICTS, Config, Experiments

EXPERIMENTS = Experiments(Path(__file__).parents[1] / "experiments")


def quick(name, tmp_path):
    with jax.enable_x64(False):
        result = EXPERIMENTS.module(name).run(Config(out=tmp_path))
    assert result.name == name and result.verdict in VERDICTS
    assert result.summary and result.key_number and result.claim
    json.dumps(result.to_dict())                                 # JSON-serialisable
    assert result.figures
    for file, caption in result.figures:
        assert caption and (tmp_path / file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result
