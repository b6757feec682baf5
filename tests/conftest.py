import os

# Before JAX starts: one test session with 8 simulated CPU devices, so that the mesh tests run
# in-process (tests/test_sharding.py), and XLA's classic CPU emitters, which compile the
# suite's small programs about twice as fast (see lossjax._compile.classic_cpu_emitters).
os.environ["XLA_FLAGS"] = " ".join([
    os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8",
    "--xla_cpu_use_fusion_emitters=false"]).strip()

# The CLI tests call `lossjax audit` in-process, which would switch this worker to JAX's
# persistent compilation cache (~/.cache/lossjax): every later compile would be written to
# disk, and the suite's time would depend on what earlier runs left there.
os.environ["LOSSJAX_CACHE"] = ""

import jax  # noqa: E402

# Tests compare in float64; float32/16 cases pass explicit dtypes.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import lossjax as lj  # noqa: E402

# The suite compares numbers, mostly in compiled programs; an eager call would also compile its
# value checks (one checkify program per signature). tests/test_checked.py tests those checks
# with them switched on (lj.eager_checks(True) there).
lj.eager_checks(False)
from lossjax._compile import fast_jit  # noqa: E402

CATALOG = lj.catalog()
NAMES = [loss.name for loss in CATALOG]
GRAD_NAMES = [loss.name for loss in CATALOG if loss.has_grad]   # ctc: autodiff only


@pytest.fixture(params=NAMES)
def loss(request):
    return lj.get(request.param)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


def mean_numerator(name, elements, args, kwargs):
    """What ``reduction="mean"`` sums before dividing by ``Loss.count``: the elements, except
    for ctc, whose mean divides each sequence's loss by its target length (as PyTorch)."""
    elements = np.asarray(elements, np.float64)
    if name != "ctc":
        return elements.sum()
    paddings = kwargs.get("label_paddings")
    lengths = (np.full(elements.shape, np.shape(args[1])[1]) if paddings is None
               else np.sum(np.asarray(paddings) < 0.5, axis=-1))
    return (elements / np.maximum(lengths, 1)).sum()


def sample(loss, kind="generic", dtype=jnp.float64, seed=0):
    return loss.sample(jax.random.PRNGKey(seed), dtype, kind)


def compiled(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` as one compiled program, as NumPy: the array arguments are
    traced, the rest (hyperparameters, strings, None) fixed. Eager JAX compiles every
    primitive of every shape on its own; one program per check compiles 3-5x faster, which is
    most of what the per-loss tests cost. (Eager calls keep their own tests:
    tests/test_loss_object.py runs the Loss invariants with and without jit.)"""
    leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
    traced = [isinstance(v, (jax.Array, np.ndarray)) for v in leaves]

    def run(arrays):
        it = iter(arrays)
        a, k = jax.tree_util.tree_unflatten(tree, [next(it) if t else v
                                                   for v, t in zip(leaves, traced)])
        return fn(*a, **k)
    out = fast_jit(run)([v for v, t in zip(leaves, traced) if t])
    return jax.tree_util.tree_map(np.asarray, out)


def pytest_terminal_summary(terminalreporter):
    """How many fuzzing examples ran (tests/test_fuzz.py records them per test)."""
    examples, tests = 0, 0
    stats = terminalreporter.stats
    for report in stats.get("passed", []) + stats.get("failed", []):
        if report.when == "call":
            for key, value in report.user_properties:
                if key == "fuzz_examples":
                    examples, tests = examples + value, tests + 1
    if tests:
        terminalreporter.write_line(
            f"fuzzing: {examples} examples over {tests} (loss, kind) pairs "
            f"(LOSSJAX_FUZZ_EXAMPLES raises the budget per pair)")


# The longest files first: `make test` (--dist worksteal) gives each worker a contiguous half
# of the collection and lets an idle worker take tests from the end of the other's queue, so
# the long files start at once and the short ones fill the end. (--dist loadfile measured
# 505-545 s for the suite, worksteal 505 s with less CPU time: a file's tests mostly stay on
# one worker, so per-file compile caches still hit.)
LONGEST_FIRST = ("test_audit_catalog.py", "test_sharding.py", "test_experiments_gan_optim.py",
                 "test_fuzz.py", "test_numerics.py", "test_experiments_training.py",
                 "test_derivatives.py", "test_loss_object.py", "test_experiments_claims_b.py",
                 "test_checked.py", "test_data.py", "test_lab.py",
                 "test_experiments_claims.py", "test_audit.py", "test_properties.py",
                 "test_optim.py", "test_sequence.py", "test_metric.py", "test_large_vocab.py",
                 "test_values.py", "test_reduce.py", "test_objectives.py",
                 "test_audit_verdicts.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable within a file
