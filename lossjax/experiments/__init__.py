"""The lab: one module per question, each ``run(config) -> Result``.

    lossjax lab [NAME ...] [--full] [--out DIR] [--device gpu] [--force]
    from lossjax.experiments import run_lab; run_lab(["robust_regression"], out="results")
"""
from lossjax.experiments._base import VERDICTS, Config, Result
from lossjax.experiments._runner import LabError, code_version, load, run_lab

NAMES = (
    "worked_examples", "gradient_shapes", "robust_regression", "class_imbalance",
    "metric_learning", "segmentation", "gan", "optimizers", "numerical_stability", "hamming",
    "multitask", "analytic_vs_autodiff", "scale_out",
)

__all__ = ["NAMES", "VERDICTS", "Config", "LabError", "Result", "code_version", "load",
           "run", "run_lab"]


def run(name: str, config: Config | None = None) -> Result:
    """Run one experiment in memory (figures go to ``config.out``)."""
    import importlib
    if name not in NAMES:
        raise LabError(f"unknown experiment {name!r}. Known: {', '.join(NAMES)}.")
    return importlib.import_module(f"lossjax.experiments.{name}").run(config or Config())
