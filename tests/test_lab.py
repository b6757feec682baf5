"""The lab runner: results are atomic and reused, failures lose nothing, the report is built
from what is stored, and the command line reports mistakes in one line."""
import json
import sys
import types

import pytest

from lossjax import cli, experiments
from lossjax.experiments import Config, LabError, Result, run_lab
from lossjax.experiments._base import figure


def _fake_module(calls, fail=False):
    def run(config):
        calls.append(config)
        fig, ax, save = figure(config, "line.png", "A line", "x", "y")
        ax.plot([0, 1], [0, config.seed], label="seed")
        saved = save()
        if fail:
            raise RuntimeError("boom")
        return Result(name="fake", title="Fake experiment", claim="a claim", verdict="holds",
                      summary=f"seed {config.seed}", key_number=f"k={config.seed}",
                      metrics={"seed": config.seed, "nan": float("nan")},
                      tables=["| a |\n|---|\n| 1 |"], figures=[saved])
    return types.SimpleNamespace(run=run)


@pytest.fixture
def fake(monkeypatch):
    calls = []
    monkeypatch.setattr(experiments, "NAMES", ("fake",))
    monkeypatch.setitem(sys.modules, "lossjax.experiments.fake", _fake_module(calls))
    return calls


def _quiet(**kw):
    return dict(progress=False, echo=lambda line: None, **kw)


def test_results_are_written_then_reused(fake, tmp_path):
    records, failures = run_lab(["fake"], out=tmp_path, **_quiet())
    assert not failures and len(fake) == 1
    stored = json.loads((tmp_path / "fake" / "result.json").read_text())
    assert stored["config"] == {"full": False, "seed": 0}
    assert stored["result"]["metrics"]["nan"] == "nan"          # JSON has no NaN
    assert (tmp_path / "fake" / "line.png").stat().st_size > 1000
    run_lab(["fake"], out=tmp_path, **_quiet())
    assert len(fake) == 1                                        # reused
    run_lab(["fake"], out=tmp_path, seed=3, **_quiet())
    assert len(fake) == 2 and fake[-1].seed == 3                 # another config re-runs
    run_lab(["fake"], out=tmp_path, seed=3, force=True, **_quiet())
    assert len(fake) == 3
    assert not list(tmp_path.glob(".*"))                         # no partial folders left


def test_a_failing_experiment_keeps_the_previous_result(fake, tmp_path, monkeypatch):
    run_lab(["fake"], out=tmp_path, **_quiet())
    before = (tmp_path / "fake" / "result.json").read_text()
    monkeypatch.setitem(sys.modules, "lossjax.experiments.fake", _fake_module([], fail=True))
    records, failures = run_lab(["fake"], out=tmp_path, force=True, **_quiet())
    assert failures and "RuntimeError: boom" in failures[0][1]
    assert (tmp_path / "fake" / "result.json").read_text() == before
    assert not list(tmp_path.glob(".fake.*"))


def test_leftovers_of_an_interrupted_run_are_cleaned(fake, tmp_path):
    partial = tmp_path / ".fake.partial-999"
    partial.mkdir()
    (partial / "line.png").write_bytes(b"half")
    run_lab(["fake"], out=tmp_path, **_quiet())
    assert not partial.exists() and (tmp_path / "fake" / "result.json").exists()


def test_corrupt_or_foreign_results_give_a_clear_error(fake, tmp_path):
    run_lab(["fake"], out=tmp_path, **_quiet())
    (tmp_path / "fake" / "result.json").write_text("{ not json")
    with pytest.raises(LabError, match="corrupt or not a lossjax lab result"):
        run_lab(["fake"], out=tmp_path, **_quiet())
    run_lab(["fake"], out=tmp_path, force=True, **_quiet())      # --force repairs it
    (tmp_path / "fake" / "result.json").unlink()
    with pytest.raises(LabError, match="has no result.json"):
        run_lab(["fake"], out=tmp_path, **_quiet())
    with pytest.raises(LabError, match="unknown experiment 'fak' \\(did you mean 'fake'"):
        run_lab(["fak"], out=tmp_path, **_quiet())


def test_report_has_the_summary_table_and_sections(fake, tmp_path):
    run_lab(["fake"], out=tmp_path, seed=2, **_quiet())
    report = (tmp_path / "REPORT.md").read_text()
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
])
def test_cli_lab_bad_input_is_one_line(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_config_key_ignores_the_output_folder():
    assert Config(out="a").key() == Config(out="b").key() == {"full": False, "seed": 0}


def _check_consistent(out, names):
    """What an interrupted run may leave: complete results, or none; never a half one."""
    from lossjax.experiments import load
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


def test_killed_at_any_point_a_rerun_completes_with_nothing_lost(tmp_path):
    """SIGKILL (and once SIGINT) at increasing delays into real `lossjax lab` processes; after
    each, the folder holds only complete results; a final run completes the rest, reuses what
    was done, and leaves no partial folders."""
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path
    names = ("slow_a", "slow_b", "slow_c")
    driver = [sys.executable, str(Path(__file__).with_name("_lab_driver.py")), str(tmp_path)]
    env = dict(os.environ, LOSSJAX_CACHE="")
    progress = []
    for i, delay in enumerate((0.3, 1.0, 2.0, 0.5, 1.5, 2.5, 3.5)):
        # from the fourth run on, --force re-runs finished experiments: the kills then land
        # while a new result replaces an old one
        proc = subprocess.Popen(driver + (["--force"] if i >= 3 else []), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = None
        while proc.poll() is None:           # the clock starts when the first experiment does
            if start is None and any(tmp_path.glob(f".slow_*.partial-{proc.pid}")):
                start = time.monotonic()
            if start is not None and time.monotonic() - start >= delay:
                proc.send_signal(signal.SIGINT if i == 2 else signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=120)
        progress.append(len(_check_consistent(tmp_path, names)))
    assert progress[0] < 3, progress          # the first kill did interrupt the run
    done = subprocess.run(driver, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _check_consistent(tmp_path, names) == list(names)
    assert done.stdout.count("(reused)") == progress[-1]        # finished work is kept
    report = (tmp_path / "REPORT.md").read_text()
    assert all(f"Fake {n}" in report for n in names)
    assert not list(tmp_path.glob(".*"))     # no partial, old or temporary files


def test_a_kill_between_the_two_renames_keeps_the_previous_result(fake, tmp_path):
    """The one non-atomic step (the previous result moved aside, the new one not yet in
    place) is repaired by the next run: the previous result comes back."""
    run_lab(["fake"], out=tmp_path, **_quiet())
    before = (tmp_path / "fake" / "result.json").read_text()
    (tmp_path / "fake").rename(tmp_path / ".fake.old-4242")
    (tmp_path / ".fake.partial-4242").mkdir()
    records, _ = run_lab(["fake"], out=tmp_path, **_quiet())
    assert len(fake) == 1                                         # restored, so reused
    assert (tmp_path / "fake" / "result.json").read_text() == before
    assert not list(tmp_path.glob(".*"))


def test_foreign_files_in_the_results_folder(fake, tmp_path):
    """A report path that is a folder is a clear error; files that only look like our
    leftovers are left alone."""
    (tmp_path / "REPORT.md").mkdir()
    with pytest.raises(LabError, match="REPORT.md exists and is not a file"):
        run_lab(["fake"], out=tmp_path, **_quiet())
    (tmp_path / "REPORT.md").rmdir()
    (tmp_path / ".notes.old-1").write_text("mine")
    run_lab(["fake"], out=tmp_path, **_quiet())
    assert (tmp_path / ".notes.old-1").read_text() == "mine"
    assert not (tmp_path / "notes").exists()
