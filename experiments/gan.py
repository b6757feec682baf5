"""GAN losses on a 2-D Gaussian mixture: minimax vs non-saturating vs WGAN-GP vs hinge.

1. Saturation, controlled: one discriminator is trained for a head start against a fixed
   initial generator (as happens early in real training, when fakes are easy to spot); the
   generator's gradient norm is then measured under each generator loss against that same
   discriminator.
2. Full training (Adam 1e-3, β = (0.5, 0.9); WGAN-GP with 5 critic steps per generator step) of each variant (alternating D and G Adam steps in one lax.scan): the
   generator's gradient norm through training, and the modes covered at the end (a mode is
   covered when ≥ 2% of generated samples fall within 3σ of it).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lossjax as lj
from lossjax.lab import Result, figure, markdown_table

MODES, RADIUS, STD = 8, 2.0, 0.05
WIDTH, Z = 64, 2


def _mlp_init(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) * np.sqrt(1.0 / a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def _mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.leaky_relu(x @ layer["w"] + layer["b"], 0.2)
    return x @ params[-1]["w"] + params[-1]["b"]


def _critic(d):
    return lambda x: _mlp(d, x)[..., 0]       # a batch (N, 2) or one point (2,)


VARIANTS = {
    "minimax": (lambda d, real, fake, key: lj.minimax_discriminator(_critic(d)(real),
                                                                    _critic(d)(fake)),
                lambda fake_logits: lj.minimax_generator(fake_logits)),
    "non-saturating": (lambda d, real, fake, key: lj.minimax_discriminator(_critic(d)(real),
                                                                           _critic(d)(fake)),
                       lambda fake_logits: lj.nonsaturating_generator(fake_logits)),
    "WGAN-GP": (lambda d, real, fake, key: lj.wasserstein_critic(_critic(d)(real),
                                                                 _critic(d)(fake))
                + 10.0 * lj.gradient_penalty(_critic(d), real, fake, key),
                lambda fake_logits: lj.wasserstein_generator(fake_logits)),
    "hinge": (lambda d, real, fake, key: lj.hinge_discriminator(_critic(d)(real),
                                                                _critic(d)(fake)),
              lambda fake_logits: lj.hinge_generator(fake_logits)),
}


def _sample_real(key, n):
    return lj.data.gaussian_mixture_2d(key, n, modes=MODES, radius=RADIUS, std=STD).data["x"]


# critic steps per generator step: WGAN-GP trains its critic 5× (Gulrajani et al. 2017)
CRITIC_STEPS = {"minimax": 1, "non-saturating": 1, "WGAN-GP": 5, "hinge": 1}


def _train(variant, g0, d0, key, steps, batch):
    d_loss, g_loss = VARIANTS[variant]
    tx = lj.optim.make("adam", learning_rate=1e-3, b1=0.5, b2=0.9)
    angle = 2 * jnp.pi * jnp.arange(MODES) / MODES
    centers = RADIUS * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)

    def body(carry, k):
        g, d, sg, sd = carry
        k, kz2 = jax.random.split(k)

        def critic_step(carry, kc):
            d, sd = carry
            kr, kz, kp = jax.random.split(kc, 3)
            mode = jax.random.randint(kr, (batch,), 0, MODES)
            real = centers[mode] + STD * jax.random.normal(jax.random.fold_in(kr, 1),
                                                           (batch, 2))
            fake = _mlp(g, jax.random.normal(kz, (batch, Z)))
            dl, gd = jax.value_and_grad(d_loss)(d, real, fake, kp)
            ud, sd = tx.update(gd, sd, d)
            return (optax.apply_updates(d, ud), sd), dl
        (d, sd), dl = jax.lax.scan(critic_step, (d, sd),
                                   jax.random.split(k, CRITIC_STEPS[variant]))
        dl = dl[-1]
        gen_objective = lambda g_: g_loss(_critic(d)(_mlp(g_, jax.random.normal(kz2, (batch, Z)))))
        gl, gg = jax.value_and_grad(gen_objective)(g)
        ug, sg = tx.update(gg, sg, g)
        g = optax.apply_updates(g, ug)
        return (g, d, sg, sd), (optax.tree_utils.tree_norm(gg), dl, gl)

    @jax.jit
    def loop(g0, d0, keys):
        return jax.lax.scan(body, (g0, d0, tx.init(g0), tx.init(d0)), keys)
    (g, d, _, _), (gnorm, dl, gl) = loop(g0, d0, jax.random.split(key, steps))
    return g, d, np.asarray(gnorm), np.asarray(dl), np.asarray(gl)


def _modes_covered(samples, threshold=0.02):
    angle = 2 * np.pi * np.arange(MODES) / MODES
    centers = RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    dist = np.linalg.norm(samples[:, None, :] - centers[None], axis=-1)
    near = dist < 3 * STD
    share = near.mean(axis=0)
    return int(np.sum(share >= threshold)), float(near.any(axis=1).mean())


def run(config):
    key = jax.random.PRNGKey(config.seed)
    kg, kd, k_head, k_train, k_eval = jax.random.split(key, 5)
    g0 = _mlp_init(kg, [Z, WIDTH, WIDTH, 2])
    d0 = _mlp_init(kd, [2, WIDTH, WIDTH, 1])
    batch = 256

    # 1. saturation against one discriminator given a head start on the initial generator
    head_start = config.pick(300, 1000)
    d_loss = VARIANTS["minimax"][0]
    tx = lj.optim.make("adam", learning_rate=1e-3, b1=0.5)

    def d_step(carry, k):
        d, s = carry
        kr, kz = jax.random.split(k)
        real = _sample_real(kr, batch)
        fake = _mlp(g0, jax.random.normal(kz, (batch, Z)))
        gd = jax.grad(d_loss)(d, real, fake, None)
        u, s = tx.update(gd, s, d)
        return (optax.apply_updates(d, u), s), None
    d_trained = jax.jit(lambda d, keys: jax.lax.scan(d_step, (d, tx.init(d)), keys)[0][0])(
        d0, jax.random.split(k_head, head_start))
    z = jax.random.normal(k_eval, (4096, Z))
    fake_logits = _critic(d_trained)(_mlp(g0, z))
    d_fake = float(jnp.mean(jax.nn.sigmoid(fake_logits)))
    saturation = {}
    for name in ("minimax", "non-saturating"):
        g_loss = VARIANTS[name][1]
        grad = jax.grad(lambda g: g_loss(_critic(d_trained)(_mlp(g, z))))(g0)
        saturation[name] = float(optax.tree_utils.tree_norm(grad))
    ratio = saturation["non-saturating"] / max(saturation["minimax"], 1e-30)

    # 2. full training of every variant
    steps = config.pick(2000, 10000)
    runs = {}
    for name in VARIANTS:
        g, _, gnorm, _, _ = _train(name, g0, d0, k_train, steps, batch)
        samples = np.asarray(_mlp(g, jax.random.normal(k_eval, (4096, Z))))
        covered, quality = _modes_covered(samples)
        early = float(np.mean(gnorm[:100]))
        runs[name] = {"modes_covered": covered, "share_near_a_mode": quality,
                      "early_generator_grad_norm": early, "gnorm": gnorm, "samples": samples}
    fig, axes, save = figure(config, "samples.png", f"Generated samples after {steps} steps",
                             "x", "y", ncols=len(VARIANTS), size=(3.2, 3.2))
    real = np.asarray(_sample_real(k_eval, 2000))
    for ax, (name, r) in zip(axes, runs.items()):
        ax.scatter(real[:, 0], real[:, 1], s=2, c="lightgray", label="real")
        ax.scatter(r["samples"][:1000, 0], r["samples"][:1000, 1], s=2, label="generated")
        ax.set_title(f"{name}: {r['modes_covered']}/{MODES} modes", fontsize=9)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
    figures = [save(legend=False)]
    fig, ax, save = figure(config, "generator_gradients.png",
                           "Generator gradient norm during training", "step",
                           "‖∂L_G/∂θ_G‖ (moving average of 25)")
    for name, r in runs.items():
        smooth = np.convolve(r["gnorm"], np.ones(25) / 25, mode="valid")
        ax.semilogy(smooth, label=name)
    figures.append(save())
    early = {k: v["early_generator_grad_norm"] for k, v in runs.items()}
    holds = saturation["minimax"] < saturation["non-saturating"]
    balanced = early["minimax"] < early["non-saturating"]
    rows = [[name, early[name], r["modes_covered"], r["share_near_a_mode"]]
            for name, r in runs.items()]
    return Result(
        name="gan", title="GAN losses on a 2-D Gaussian mixture",
        claim="The minimax generator loss saturates early in training; the non-saturating and "
              "Wasserstein losses fix it.",
        verdict=("holds" if holds and balanced else "depends" if holds else "does not hold"),
        summary=(f"after a {head_start}-step head start the discriminator gives the initial "
                 f"fakes D = {d_fake:.3f} on average; against it the minimax generator's "
                 f"gradient norm is {saturation['minimax']:.3g}, the non-saturating one's "
                 f"{saturation['non-saturating']:.3g} ({ratio:.0f}× larger). In full training "
                 f"(first 100 steps, mean generator gradient norm): "
                 + ", ".join(f"{k} {v:.3g}" for k, v in early.items())
                 + f"; modes covered after {steps} steps: "
                 + ", ".join(f"{k} {r['modes_covered']}/{MODES}" for k, r in runs.items())
                 + (". Saturation needs a confident discriminator: in balanced training from "
                    "scratch the discriminator is not ahead early on this problem and the "
                    "minimax gradient is not smaller." if not balanced else ".")),
        key_number=f"generator gradient, confident D: minimax {saturation['minimax']:.2g} vs "
                   f"non-saturating {saturation['non-saturating']:.2g}",
        metrics={"head_start_steps": head_start, "mean_D_on_fakes": d_fake,
                 "saturation_grad_norm": saturation, "ratio": ratio,
                 "runs": {k: {kk: vv for kk, vv in v.items() if kk not in ("gnorm", "samples")}
                          for k, v in runs.items()}},
        tables=[markdown_table(["variant", "generator gradient norm, first 100 steps",
                                "modes covered", "share of samples near a mode"], rows,
                               fmt="{:.3g}")],
        figures=figures)
