"""Running experiments: atomic per-experiment results, resumable runs, REPORT.md.

An *experiments folder* holds one module per question, each with ``run(config) -> Result``;
an optional ``__init__.py`` gives their order as ``ORDER = ("name", ...)`` (otherwise the
modules' names in alphabetical order), and modules whose names start with ``_`` are helpers
the experiments share. The repository's ``experiments/`` is such a folder; a researcher's own
folder works the same way (``lossjax lab --experiments DIR``).

Layout of the output folder::

    OUT/REPORT.md                 summary table, then one section per experiment
    OUT/<name>/result.json        the Result, the config and the code version it came from
    OUT/<name>/*.png              its figures

An experiment runs in ``OUT/.<name>.partial-<pid>``; only when its result.json is written and
flushed is the folder renamed into place, so an interrupted run (Ctrl-C, kill -9, a crash)
never leaves a half-written result: a re-run finds either the complete previous result or
none. A result is reused when its config and code version match, unless ``force``; the code
version of an experiment covers lossjax's sources, its own module and the folder's shared
helpers, so editing one experiment re-runs that one only.
"""
from __future__ import annotations

import concurrent.futures
import difflib
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import time
import traceback
import types
from pathlib import Path

from lossjax._console import progress_bar
from lossjax.lab._base import Config, Result

FORMAT = "lossjax-lab-result/1"
DEFAULT_FOLDER = "experiments"


class LabError(Exception):
    """A problem with the output folder or the request, reported in one line."""


def _digest(paths, root) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def library_version() -> str:
    """Hash of every source file of lossjax: any change to the library re-runs the lab."""
    root = Path(__file__).resolve().parents[1]
    return _digest(sorted(root.rglob("*.py")), root)[:16]


class Experiments:
    """The experiment modules of a folder (see the module docstring)."""

    def __init__(self, folder=DEFAULT_FOLDER):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise LabError(f"no experiments folder at {folder}: run from the repository root "
                           f"(where experiments/ is) or pass --experiments DIR.")
        init = self.folder / "__init__.py"
        # a package name of its own, so that experiments may import their shared helpers
        # relatively and two folders never collide in sys.modules
        self.package = "lossjax_lab_" + hashlib.sha256(str(self.folder).encode()).hexdigest()[:12]
        if init.is_file():
            spec = importlib.util.spec_from_file_location(
                self.package, init, submodule_search_locations=[str(self.folder)])
            package = importlib.util.module_from_spec(spec)
            sys.modules[self.package] = package
            spec.loader.exec_module(package)
        else:
            package = types.ModuleType(self.package)
            package.__path__ = [str(self.folder)]
            sys.modules[self.package] = package
        modules = sorted(p.stem for p in self.folder.glob("*.py") if not p.stem.startswith("_"))
        order = tuple(getattr(package, "ORDER", ()))
        missing = [n for n in order if n not in modules]
        if missing:
            raise LabError(f"{init}: ORDER names {', '.join(missing)}, which have no module in "
                           f"{self.folder}.")
        self.names = order + tuple(n for n in modules if n not in order)
        shared = sorted(p for p in self.folder.glob("_*.py"))
        self._shared = _digest(shared, self.folder)
        self._library = library_version()

    def check(self, names):
        unknown = [n for n in names if n not in self.names]
        if unknown:
            hints = [difflib.get_close_matches(n, self.names, 1) for n in unknown]
            hint = "; ".join(f"{n!r} (did you mean {h[0]!r}?)" if h else repr(n)
                             for n, h in zip(unknown, hints))
            raise LabError(f"unknown experiment {hint}. Known: {', '.join(self.names)}.")

    def module(self, name):
        self.check([name])
        importlib.invalidate_caches()        # modules written since the last import
        return importlib.import_module(f"{self.package}.{name}")

    def version(self, name) -> str:
        """What a stored result of ``name`` must match to be reused: lossjax's sources, the
        experiment's module and the folder's shared helpers."""
        h = hashlib.sha256((self._library + self._shared).encode())
        h.update((self.folder / f"{name}.py").read_bytes())
        return h.hexdigest()[:16]


def _atomic_write(path: Path, text: str):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(out: Path, name: str):
    """The stored record for ``name`` (dict with result, config, code_version, seconds), None
    when there is none, or a LabError for a file that is not one of ours."""
    folder = out / name
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise LabError(f"{folder} exists but is not a folder; move it away or choose another "
                       f"--out.")
    path = folder / "result.json"
    if not path.exists():
        raise LabError(f"{folder} has no result.json: it was not written by lossjax lab. "
                       f"Move it away or choose another --out.")
    try:
        record = json.loads(path.read_text())
        if record.get("format") != FORMAT:
            raise ValueError(f"format {record.get('format')!r}")
        record["result"] = Result.from_dict(record["result"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LabError(f"{path} is corrupt or not a lossjax lab result ({e}). Delete the "
                       f"folder or re-run with --force.") from None
    return record


def _clean_leftovers(out: Path):
    """Folders of runs that were interrupted before their result was complete."""
    for p in out.glob(".*.partial-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.glob(".*.old-*"):
        if not p.is_dir():
            continue                         # not ours: left alone
        # a run killed between moving the previous result aside and moving the new one in:
        # the previous result is still the valid one
        final = out / p.name[1:].rsplit(".old-", 1)[0]
        if not final.exists() and (p / "result.json").is_file():
            os.rename(p, final)
        else:
            shutil.rmtree(p, ignore_errors=True)
    for p in out.glob(".*.tmp-*"):
        p.unlink(missing_ok=True)


def run_one(experiments: Experiments, name: str, config: Config, out: Path) -> dict:
    module = experiments.module(name)
    version = experiments.version(name)
    partial = out / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    start = time.perf_counter()
    try:
        result = module.run(Config(full=config.full, seed=config.seed, out=partial))
        missing = [f for f, _ in result.figures if not (partial / f).is_file()]
        if missing:
            raise RuntimeError(f"{name}: figures {missing} were not written")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    record = {"format": FORMAT, "name": name, "config": config.key(), "code_version": version,
              "seconds": round(seconds, 2), "result": result.to_dict()}
    _atomic_write(partial / "result.json", json.dumps(record, indent=2, default=str) + "\n")
    final = out / name
    old = out / f".{name}.old-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    os.rename(partial, final)
    shutil.rmtree(old, ignore_errors=True)
    record["result"] = result
    return record


def run_lab(names=None, *, experiments=DEFAULT_FOLDER, full=False, seed=0, out="results",
            force=False, progress=True, echo=print, jobs=None) -> tuple[list, list]:
    """Run (or reuse) the named experiments of the folder ``experiments`` (default: all of
    them, in its order) and write ``out/REPORT.md``.

    ``jobs`` experiments run at once, in threads (default: 2 when the machine has two CPUs
    or more): JAX compiles one experiment's programs while Python traces another's, which
    nearly halves a quick run on 2 cores. Results, the report and the printed lines are the
    same in any case; timings measured inside an experiment are noisier.

    Returns (records, failures): one record per finished experiment in the order of
    ``names``, and (name, message) for each experiment that raised (the others still run)."""
    import jax
    experiments = experiments if isinstance(experiments, Experiments) else \
        Experiments(experiments)
    names = list(experiments.names) if names is None else list(names)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LabError(f"--out {out} exists and is not a folder.")
    experiments.check(names)
    out.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(out)
    config = Config(full=full, seed=seed)
    jobs = jobs or min(2, os.cpu_count() or 1)
    bar = progress_bar(len(names), "experiment") if progress else None
    if bar is not None:
        plain_echo = echo

        def echo(line):                     # print above the progress bar, not through it
            with bar.external_write_mode():
                plain_echo(line)
    device = jax.config.jax_default_device        # the caller's, for every worker thread

    def run(name):
        with jax.default_device(device):
            return run_one(experiments, name, config, out)

    done, failures = {}, []
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        pending = {}
        for name in names:
            record = None if force else load(out, name)
            if (record is not None and record["config"] == config.key()
                    and record["code_version"] == experiments.version(name)):
                done[name] = (record, "reused")
            else:
                pending[pool.submit(run, name)] = name
        order = {name: i for i, name in enumerate(names, 1)}
        for name in [n for n in names if n in done]:
            _announce(echo, bar, order[name], len(names), name, *done[name])
        for future in concurrent.futures.as_completed(pending):
            name = pending[future]
            try:
                record = future.result()
            except Exception as e:      # one experiment's failure must not lose the others
                failures.append((name, f"{type(e).__name__}: {e}"))
                echo(f"[{order[name]}/{len(names)}] {name}: FAILED — {type(e).__name__}: {e}")
                traceback.print_exception(e, file=sys.stderr)
                if bar:
                    bar.update()
                continue
            done[name] = (record, f"{record['seconds']:.1f} s")
            _announce(echo, bar, order[name], len(names), name, *done[name])
            write_report(out, config, experiments)
    if bar:
        bar.close()
    write_report(out, config, experiments)
    return [done[n][0] for n in names if n in done], failures


def _announce(echo, bar, i, total, name, record, status):
    r = record["result"]
    echo(f"[{i}/{total}] {name}: {r.verdict} — {r.key_number} ({status})")
    if bar:
        bar.set_description(name)
        bar.update()


def write_report(out: Path, config: Config, experiments: Experiments):
    """REPORT.md from every stored result in ``out`` (in the folder's order), written
    atomically."""
    if (out / "REPORT.md").exists() and not (out / "REPORT.md").is_file():
        raise LabError(f"{out / 'REPORT.md'} exists and is not a file; move it away or choose "
                       f"another --out.")
    records = []
    for name in experiments.names:
        try:
            record = load(out, name)
        except LabError:
            continue
        if record is not None:
            records.append(record)
    lines = ["# lossjax lab report", "",
             f"Configuration: {'full' if config.full else 'quick'}, seed {config.seed} "
             f"(trained-model comparisons over {config.seeds} seeds, numbers as mean [95% t "
             f"interval]); lossjax "
             f"code version {library_version()}. Reproduce with "
             f"`lossjax lab{' --full' if config.full else ''}"
             f"{f' --seed {config.seed}' if config.seed else ''}`.", "",
             "| # | experiment | claim | verdict | key number |", "|---|---|---|---|---|"]
    for i, rec in enumerate(records, 1):
        r = rec["result"]
        current = rec["code_version"] == experiments.version(rec["name"])
        stale = "" if current and rec["config"] == config.key() else \
            " (from an earlier code version or config)"
        lines.append(f"| {i} | [{r.title}](#{_anchor(i, r.title)}) | {_cell(r.claim)} | "
                     f"**{r.verdict}**{stale} | {_cell(r.key_number)} |")
    for i, rec in enumerate(records, 1):
        r = rec["result"]
        lines += ["", f"## {i}. {r.title}", "", f"**Claim.** {r.claim}", "",
                  f"**Verdict: {r.verdict}.** {r.summary[:1].upper()}{r.summary[1:]}", ""]
        for table in r.tables:
            lines += [table, ""]
        for file, caption in r.figures:
            lines += [f"![{caption}]({r.name}/{file})", ""]
        lines.append(f"<sub>{r.name}: {rec['seconds']} s, config {rec['config']}, "
                     f"code version {rec['code_version']}</sub>")
    _atomic_write(out / "REPORT.md", "\n".join(lines) + "\n")


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _anchor(i, title):
    import re
    return f"{i}-" + re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
