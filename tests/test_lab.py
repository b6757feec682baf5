"""The lab runner: results are atomic and reused, failures lose nothing, the report is built
from what is stored, and the command line reports mistakes in one line. The experiments here
are real modules in a folder of the test's own (as a researcher's would be)."""
import json
import sys
import textwrap
from pathlib import Path

import pytest

from lossjax import cli
from lossjax.lab import Config, Experiments, LabError, Result, run_lab

FAKE = textwrap.dedent("""
    from lossjax.lab import Result, figure

    FAIL = False

    def run(config):
        with open({calls!r}, "a") as f:
            f.write(f"{{config.seed}}\\n")
        fig, ax, save = figure(config, "line.png", "A line", "x", "y")
        ax.plot([0, 1], [0, config.seed], label="seed")
        saved = save()
        if FAIL:
            raise RuntimeError("boom")
        return Result(name="fake", title="Fake experiment", claim="a claim", verdict="holds",
                      summary=f"seed {{config.seed}}", key_number=f"k={{config.seed}}",
                      metrics={{"seed": config.seed, "nan": float("nan")}},
                      tables=["| a |\\n|---|\\n| 1 |"], figures=[saved])
""")


class Fake:
    """A folder with one experiment, ``fake``, that logs each run's seed."""

    def __init__(self, root: Path):
        self.folder = root / "my_experiments"
        self.folder.mkdir()
        self.log = root / "calls.txt"
        self.write()

    def write(self, fail=False, extra=""):
        text = FAKE.format(calls=str(self.log)).replace("FAIL = False", f"FAIL = {fail}")
        (self.folder / "fake.py").write_text(text + extra)
        for name in [n for n in sys.modules if n.endswith(".fake")]:
            del sys.modules[name]         # a fresh import sees the edited module

    @property
    def calls(self):
        return [int(line) for line in self.log.read_text().split()] if self.log.exists() \
            else []


@pytest.fixture
def fake(tmp_path):
    return Fake(tmp_path)


def _quiet(fake, **kw):
    return dict(experiments=fake.folder, progress=False, echo=lambda line: None, **kw)


def test_results_are_written_then_reused(fake, tmp_path):
    out = tmp_path / "results"
    records, failures = run_lab(["fake"], out=out, **_quiet(fake))
    assert not failures and fake.calls == [0]
    stored = json.loads((out / "fake" / "result.json").read_text())
    assert stored["config"] == {"full": False, "seed": 0}
    assert stored["result"]["metrics"]["nan"] == "nan"          # JSON has no NaN
    assert (out / "fake" / "line.png").stat().st_size > 1000
    run_lab(["fake"], out=out, **_quiet(fake))
    assert fake.calls == [0]                                     # reused
    run_lab(["fake"], out=out, seed=3, **_quiet(fake))
    assert fake.calls == [0, 3]                                  # another config re-runs
    run_lab(["fake"], out=out, seed=3, force=True, **_quiet(fake))
    assert fake.calls == [0, 3, 3]
    assert not list(out.glob(".*"))                              # no partial folders left


def test_editing_an_experiment_reruns_that_one_only(fake, tmp_path):
    out = tmp_path / "results"
    (fake.folder / "other.py").write_text(FAKE.format(calls=str(tmp_path / "other.txt"))
                                          .replace('name="fake"', 'name="other"'))
    run_lab(out=out, **_quiet(fake))                             # both, alphabetical order
    assert fake.calls == [0] and (tmp_path / "other.txt").read_text() == "0\n"
    fake.write(extra="\n# an edit\n")
    records, _ = run_lab(out=out, **_quiet(fake))
    assert fake.calls == [0, 0]                                  # the edited one re-ran
    assert (tmp_path / "other.txt").read_text() == "0\n"          # the other was reused
    assert [r["name"] for r in records] == ["fake", "other"]
    (fake.folder / "_shared.py").write_text("HELPER = 1\n")    # a shared helper: both re-run
    run_lab(out=out, **_quiet(fake))
    assert fake.calls == [0, 0, 0] and (tmp_path / "other.txt").read_text() == "0\n0\n"


def test_the_folder_gives_the_order(fake, tmp_path):
    (fake.folder / "alpha.py").write_text(FAKE.format(calls=str(tmp_path / "alpha.txt")))
    assert Experiments(fake.folder).names == ("alpha", "fake")
    (fake.folder / "__init__.py").write_text('ORDER = ("fake", "alpha")\n')
    assert Experiments(tmp_path / "my_experiments").names == ("fake", "alpha")
    with pytest.raises(LabError, match="no experiments folder at"):
        Experiments(tmp_path / "nowhere")


def test_a_failing_experiment_keeps_the_previous_result(fake, tmp_path):
    out = tmp_path / "results"
    run_lab(["fake"], out=out, **_quiet(fake))
    before = (out / "fake" / "result.json").read_text()
    fake.write(fail=True)
    records, failures = run_lab(["fake"], out=out, force=True, **_quiet(fake))
    assert failures and "RuntimeError: boom" in failures[0][1]
    assert (out / "fake" / "result.json").read_text() == before
    assert not list(out.glob(".fake.*"))


def test_leftovers_of_an_interrupted_run_are_cleaned(fake, tmp_path):
    out = tmp_path / "results"
    partial = out / ".fake.partial-999"
    partial.mkdir(parents=True)
    (partial / "line.png").write_bytes(b"half")
    run_lab(["fake"], out=out, **_quiet(fake))
    assert not partial.exists() and (out / "fake" / "result.json").exists()


def test_corrupt_or_foreign_results_give_a_clear_error(fake, tmp_path):
    out = tmp_path / "results"
    run_lab(["fake"], out=out, **_quiet(fake))
    (out / "fake" / "result.json").write_text("{ not json")
    with pytest.raises(LabError, match="corrupt or not a lossjax lab result"):
        run_lab(["fake"], out=out, **_quiet(fake))
    run_lab(["fake"], out=out, force=True, **_quiet(fake))       # --force repairs it
    (out / "fake" / "result.json").unlink()
    with pytest.raises(LabError, match="has no result.json"):
        run_lab(["fake"], out=out, **_quiet(fake))
    with pytest.raises(LabError, match="unknown experiment 'fak' \\(did you mean 'fake'"):
        run_lab(["fak"], out=out, **_quiet(fake))


def test_report_has_the_summary_table_and_sections(fake, tmp_path):
    out = tmp_path / "results"
    run_lab(["fake"], out=out, seed=2, **_quiet(fake))
    report = (out / "REPORT.md").read_text()
    assert "| 1 | [Fake experiment](#1-fake-experiment) | a claim | **holds** | k=2 |" in report
    assert "## 1. Fake experiment" in report and "![A line](fake/line.png)" in report
    assert "`lossjax lab --seed 2`" in report


def test_verdicts_are_checked():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Result(name="x", title="x", claim="c", verdict="maybe", summary="s", key_number="k",
               metrics={})


@pytest.mark.parametrize("argv, message", [
    (["lab", "nope", "--out", "{tmp}"], "unknown experiment 'nope'"),
    (["lab", "hamming", "--device", "tpu", "--out", "{tmp}"], "--device tpu: no such JAX backend"),
    (["lab", "--experiments", "{tmp}/none"], "no experiments folder at"),
])
def test_cli_lab_bad_input_is_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])          # where experiments/ is
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_config_key_ignores_the_output_folder():
    assert Config(out="a").key() == Config(out="b").key() == {"full": False, "seed": 0}


def test_the_repository_experiments_in_their_order():
    names = Experiments(Path(__file__).parents[1] / "experiments").names
    assert names == ("worked_examples", "gradient_shapes", "robust_regression",
                     "class_imbalance", "label_noise", "metric_learning", "segmentation", "gan",
                     "optimizers", "numerical_stability", "hamming", "multitask",
                     "analytic_vs_autodiff", "scale_out")


def test_python_dash_m_lossjax_is_the_command(tmp_path):
    import subprocess
    done = subprocess.run([sys.executable, "-m", "lossjax", "lab", "--experiments",
                           str(tmp_path / "none")], capture_output=True, text=True)
    assert done.returncode == 2 and "no experiments folder at" in done.stderr


def _check_consistent(out, names):
    """What an interrupted run may leave: complete results, or none; never a half one."""
    from lossjax.lab import load
    done = []
    for name in names:
        record = load(out, name)                # raises LabError on anything half-written
        if record is not None:
            assert (out / name / "curve.png").read_bytes()[:4] == b"\x89PNG"
            assert (out / name / "steps.txt").read_text() == "".join(f"{i}\n" for i in range(8))
            done.append(name)
    report = out / "REPORT.md"
    if report.exists():
        assert report.read_text().startswith("# lossjax lab report")
    return done


@pytest.mark.slow
def test_killed_at_any_point_a_rerun_completes_with_nothing_lost(tmp_path):
    """SIGKILL (and once SIGINT) at increasing delays into real `lossjax lab` processes; after
    each, the folder holds only complete results; a final run completes the rest, reuses what
    was done, and leaves no partial folders."""
    import os
    import signal
    import subprocess
    import time
    names = ("slow_a", "slow_b", "slow_c")
    out = tmp_path / "results"
    driver = [sys.executable, str(Path(__file__).with_name("_lab_driver.py")), str(out)]
    env = dict(os.environ, LOSSJAX_CACHE="")
    progress = []
    for i, delay in enumerate((0.3, 1.0, 2.0, 0.5, 1.5, 2.5, 3.5)):
        # from the fourth run on, --force re-runs finished experiments: the kills then land
        # while a new result replaces an old one
        proc = subprocess.Popen(driver + (["--force"] if i >= 3 else []), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = None
        while proc.poll() is None:           # the clock starts when the first experiment does
            if start is None and any(out.glob(f".slow_*.partial-{proc.pid}")):
                start = time.monotonic()
            if start is not None and time.monotonic() - start >= delay:
                proc.send_signal(signal.SIGINT if i == 2 else signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=120)
        progress.append(len(_check_consistent(out, names)))
    assert progress[0] < 3, progress          # the first kill did interrupt the run
    done = subprocess.run(driver, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _check_consistent(out, names) == list(names)
    assert done.stdout.count("(reused)") == progress[-1]        # finished work is kept
    report = (out / "REPORT.md").read_text()
    assert all(f"Fake {n}" in report for n in names)
    assert not list(out.glob(".*"))     # no partial, old or temporary files


def test_a_kill_between_the_two_renames_keeps_the_previous_result(fake, tmp_path):
    """The one non-atomic step (the previous result moved aside, the new one not yet in
    place) is repaired by the next run: the previous result comes back."""
    out = tmp_path / "results"
    run_lab(["fake"], out=out, **_quiet(fake))
    before = (out / "fake" / "result.json").read_text()
    (out / "fake").rename(out / ".fake.old-4242")
    (out / ".fake.partial-4242").mkdir()
    records, _ = run_lab(["fake"], out=out, **_quiet(fake))
    assert fake.calls == [0]                                         # restored, so reused
    assert (out / "fake" / "result.json").read_text() == before
    assert not list(out.glob(".*"))


def test_foreign_files_in_the_results_folder(fake, tmp_path):
    """A report path that is a folder is a clear error; files that only look like our
    leftovers are left alone."""
    out = tmp_path / "results"
    (out / "REPORT.md").mkdir(parents=True)
    with pytest.raises(LabError, match="REPORT.md exists and is not a file"):
        run_lab(["fake"], out=out, **_quiet(fake))
    (out / "REPORT.md").rmdir()
    (out / ".notes.old-1").write_text("mine")
    run_lab(["fake"], out=out, **_quiet(fake))
    assert (out / ".notes.old-1").read_text() == "mine"
    assert not (out / "notes").exists()


def test_the_readme_has_a_row_for_every_experiment():
    from _experiments import EXPERIMENTS, readme_lab_rows
    rows = readme_lab_rows()
    assert len(rows) == len(EXPERIMENTS.names), sorted(rows)
