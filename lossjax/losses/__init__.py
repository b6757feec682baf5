"""The catalogue, one module per family. Importing a module registers its losses."""
from lossjax.losses import (  # noqa: F401
    regression, classification, multiclass, metric, metric_batch, segmentation, sequence, robust, adversarial, composite)
