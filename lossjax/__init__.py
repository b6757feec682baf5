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
    gaussian_nll, huber, log_cosh, mae, mape, mse, msle, poisson, poisson_nll, quantile,
    smooth_l1)
from lossjax.losses.classification import (
    binary_cross_entropy, binary_cross_entropy_with_logits, binary_focal_cross_entropy,
    categorical_hinge, focal_loss, hinge, squared_hinge)
from lossjax.losses.multiclass import cross_entropy, kl_divergence, nll, softmax_focal_loss
from lossjax.losses.margin import (
    hinge_embedding, multi_margin, multilabel_margin, multilabel_soft_margin, soft_margin)
from lossjax.losses.structured import (
    fenchel_young, multiclass_hinge, multiclass_perceptron, multiclass_sparsemax, perceptron,
    poly_loss_cross_entropy, ranking_softmax, sparsemax)
from lossjax.losses.divergence import (
    convex_kl_divergence, cosine_distance, cosine_similarity, generalized_kl_divergence, l2_loss)
from lossjax.losses.noisy_labels import generalized_cross_entropy, symmetric_cross_entropy
from lossjax.losses.margin_softmax import arcface, cosface, cosine_logits
from lossjax.losses.metric import (
    center_loss, center_update, contrastive, cosine_embedding, margin_ranking, triplet_margin,
    triplet_margin_with_distance)
from lossjax.losses.metric_batch import info_nce, mined_triplet, ntxent
from lossjax.losses.metric_pairs import lifted_structured, multi_similarity, supcon
from lossjax.losses.similarity import circle
from lossjax.losses.segmentation import (
    dice, focal_tversky, jaccard, multiclass_generalized_dice, tversky)
from lossjax.losses.lovasz import lovasz_hinge, lovasz_softmax
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
from lossjax.checked import Checked, check_inputs, checked, eager_checks

__version__ = "0.1.0"

__all__ = [
    "Kink", "Loss", "Sample", "Terms", "catalog", "define_loss", "get", "reduce",
    "audit", "data", "objective", "optim", "sharding", "testing", "train", "checked",
    "check_inputs", "Checked", "eager_checks",
    # regression
    "mse", "mae", "huber", "smooth_l1", "log_cosh", "quantile", "poisson_nll", "gaussian_nll",
    "mape", "msle", "poisson", "l2_loss",
    # classification
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "binary_focal_cross_entropy",
    "cross_entropy", "nll", "kl_divergence", "generalized_kl_divergence",
    "convex_kl_divergence", "focal_loss", "softmax_focal_loss", "hinge", "squared_hinge",
    "categorical_hinge", "soft_margin", "multilabel_soft_margin", "multilabel_margin",
    "multi_margin", "poly_loss_cross_entropy", "perceptron", "multiclass_perceptron",
    "multiclass_hinge", "sparsemax", "multiclass_sparsemax", "fenchel_young", "ranking_softmax",
    "generalized_cross_entropy", "symmetric_cross_entropy", "arcface", "cosface",
    "cosine_logits",
    # metric learning
    "triplet_margin", "triplet_margin_with_distance", "mined_triplet", "contrastive",
    "center_loss", "center_update", "ntxent", "info_nce", "cosine_embedding", "margin_ranking",
    "hinge_embedding", "cosine_similarity", "cosine_distance", "supcon", "lifted_structured",
    "multi_similarity", "circle",
    # segmentation, sequences, robust, adversarial, composite, large vocabulary
    "dice", "tversky", "jaccard", "focal_tversky", "multiclass_generalized_dice",
    "lovasz_softmax", "lovasz_hinge", "hamming", "soft_hamming", "ctc", "adaptive_robust",
    "minimax_discriminator", "minimax_generator", "nonsaturating_generator",
    "lsgan_discriminator", "lsgan_generator", "hinge_discriminator", "hinge_generator",
    "wasserstein_critic", "wasserstein_generator", "gradient_penalty",
    "uncertainty_weighting", "weighted_sum", "WeightedSum", "linear_cross_entropy",
]
