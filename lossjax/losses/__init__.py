"""The catalogue, one module per family. Importing a module registers its losses."""
from lossjax.losses import regression, classification, robust, adversarial  # noqa: F401
