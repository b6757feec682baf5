"""The lab's questions, one module per claim, each ``run(config) -> Result``
(see :mod:`lossjax.lab`). ``lossjax lab`` / ``make lab`` run them in this order."""

ORDER = (
    "worked_examples", "gradient_shapes", "robust_regression", "class_imbalance", "label_noise",
    "metric_learning", "segmentation", "gan", "optimizers", "numerical_stability", "hamming",
    "multitask", "analytic_vs_autodiff", "scale_out",
)
