"""lossjax: pure, jittable losses with hand-derived derivatives, and the tools to check them.

    import lossjax as lj
    lj.mse(pred, y)                      # value (reduction="mean")
    lj.mse.grad(pred, y)                 # hand-derived gradient
    jax.grad(lj.mse)(pred, y)            # autodiff, for comparison
    lj.catalog(), lj.get("huber")
    lj.audit.check(fn, x, grad=my_grad)  # is a hand-written derivative right?
    lj.train.fit(loss_fn, params, data, lj.optim.make("adam"), steps=500)
"""
from lossjax import reduce
from lossjax._loss import Kink, Loss, Sample, Terms, catalog, get
from lossjax.losses.regression import (
    gaussian_nll, huber, log_cosh, mae, mse, poisson_nll, quantile, smooth_l1)
from lossjax.losses.classification import (
    binary_cross_entropy, binary_cross_entropy_with_logits, focal_loss, hinge, squared_hinge)
from lossjax.losses.multiclass import cross_entropy, kl_divergence, nll, softmax_focal_loss
from lossjax.losses.metric import (
    center_loss, center_update, contrastive, cosine_embedding, margin_ranking, triplet_margin)
from lossjax.losses.metric_batch import info_nce, mined_triplet, ntxent
from lossjax.losses.segmentation import dice, jaccard, tversky
from lossjax.losses.sequence import ctc, hamming, soft_hamming
from lossjax.losses.robust import adaptive_robust
from lossjax.losses.composite import WeightedSum, uncertainty_weighting, weighted_sum
from lossjax.losses.large_vocab import linear_cross_entropy
from lossjax.losses.adversarial import (
    gradient_penalty, hinge_discriminator, hinge_generator, lsgan_discriminator, lsgan_generator,
    minimax_discriminator, minimax_generator, nonsaturating_generator, wasserstein_critic,
    wasserstein_generator)

from lossjax import audit, data, optim, sharding, testing, train
from lossjax.objective import objective
from lossjax.define import define_loss
from lossjax.checked import Checked, check_inputs, checked

__version__ = "0.1.0"

__all__ = [
    "Kink", "Loss", "Sample", "Terms", "catalog", "define_loss", "get", "reduce",
    "audit", "data", "objective", "optim", "sharding", "testing", "train", "checked", "check_inputs", "Checked",
    "mse", "mae", "huber", "smooth_l1", "log_cosh", "quantile", "poisson_nll", "gaussian_nll",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy", "nll",
    "kl_divergence", "focal_loss", "softmax_focal_loss", "hinge", "squared_hinge",
    "triplet_margin", "mined_triplet", "contrastive", "center_loss", "center_update", "ntxent",
    "info_nce", "cosine_embedding", "margin_ranking",
    "dice", "tversky", "jaccard", "hamming", "soft_hamming", "ctc", "adaptive_robust", "minimax_discriminator", "minimax_generator", "nonsaturating_generator",
    "lsgan_discriminator", "lsgan_generator", "hinge_discriminator", "hinge_generator",
    "wasserstein_critic", "wasserstein_generator", "gradient_penalty",
    "uncertainty_weighting", "weighted_sum", "WeightedSum", "linear_cross_entropy",
]
