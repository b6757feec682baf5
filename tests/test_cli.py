"""The `lossjax` command."""
import json
import sys
import types

import jax.numpy as jnp

import lossjax as lj
from lossjax import cli


def test_catalog_markdown_lists_every_loss_and_matches_the_readme(capsys):
    assert cli.main(["catalog", "--markdown"]) == 0
    table = capsys.readouterr().out
    for loss in lj.catalog():
        assert f"| `{loss.name}` |" in table
    with open("README.md") as f:
        assert table.strip() in f.read(), "README's loss table is stale: regenerate it with " \
                                          "`lossjax catalog --markdown`"


def test_audit_named_losses_writes_json_and_markdown(tmp_path, capsys):
    out_json, out_md = tmp_path / "a.json", tmp_path / "a.md"
    code = cli.main(["audit", "huber", "hinge", "--dtype", "float32", "--kind", "edge",
                     "--json", str(out_json), "--markdown", str(out_md)])
    assert code == 0
    rows = json.loads(out_json.read_text())
    assert [(r["loss"], r["dtype"], r["kind"], r["ok"]) for r in rows] == [
        ("huber", "float32", "edge", True), ("hinge", "float32", "edge", True)]
    assert "| hinge | float32 | edge | PASS |" in out_md.read_text()
    assert "2 audits of 2 losses" in capsys.readouterr().out


def _user_module(monkeypatch):
    mod = types.ModuleType("user_objective")
    mod.f = lambda x: jnp.sum(jnp.sin(x) * x)
    mod.good = lambda x: jnp.cos(x) * x + jnp.sin(x)
    mod.bad = lambda x: jnp.cos(x) * x - jnp.sin(x)
    mod.matmul = lambda x, y: jnp.sum(x @ y)
    monkeypatch.setitem(sys.modules, "user_objective", mod)


def test_audit_target_with_grad(monkeypatch, capsys, tmp_path):
    _user_module(monkeypatch)
    assert cli.main(["audit", "--target", "user_objective:f", "--grad", "user_objective:good",
                     "--shape", "6"]) == 0
    assert "PASS" in capsys.readouterr().out
    path = tmp_path / "r.json"
    assert cli.main(["audit", "--target", "user_objective:f", "--grad", "user_objective:bad",
                     "--shape", "6", "--json", str(path)]) == 1
    report = json.loads(path.read_text())
    assert report["blame"] == "hand-derived" and not report["ok"]


def test_bad_command_lines_give_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    _user_module(monkeypatch)
    cases = [
        (["audit", "hubber"], "no loss named 'hubber'"),
        (["audit", "--target", "no_such_module_xyz:f", "--shape", "3"], "cannot import"),
        (["audit", "--target", "user_objective", "--shape", "3"], "expected 'package.module:function'"),
        (["audit", "--target", "user_objective:nope", "--shape", "3"], "has no attribute"),
        (["audit", "--target", "user_objective:f"], "needs its inputs: one --shape per"),
        (["audit", "--grad", "user_objective:good", "--shape", "6"],
         "--grad, --shape audit your own function: add --target"),
        (["audit", "--target", "user_objective:f", "--args", str(tmp_path / "none.npz")],
         "cannot read it as .npz"),
        (["audit", "--target", str(tmp_path / "missing.py") + ":f", "--shape", "3"],
         "no such file"),
        (["audit", "--target", "user_objective:f", "--shape", "a,b"], "expected comma-separated"),
        (["audit", "--target", "user_objective:f", "--shape", "-3"], "expected comma-separated"),
        (["audit", "--target", "user_objective:matmul", "--shape", "3", "--shape", "4"],
         "auditing user_objective:matmul on shapes ['3', '4'] failed with TypeError"),
        (["audit", "--target", "broken_user_module:f", "--shape", "3"],
         "importing 'broken_user_module' failed with RuntimeError: cannot start here"),
        (["audit", "--target", "user_objective:f", "hinge", "--shape", "3"],
         "give either loss names or --target"),
        (["lab", "gann", "--out", str(tmp_path / "lab")], "unknown experiment 'gann'"),
    ]
    broken = tmp_path / "broken_user_module.py"
    broken.write_text("raise RuntimeError('cannot start here\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for argv, message in cases:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err


def test_argparse_mistakes_are_one_line_too(capsys):
    import pytest
    for argv in (["audit", "--dtype", "float8"], ["lab", "--sed", "3"], ["nonsense"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("lossjax") and "error:" in err and "\n" not in err, err


USER_FILE = """
import jax.numpy as jnp


def ce(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - jnp.log(jnp.exp(z).sum(axis=1, keepdims=True))
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], 1))


def ce_grad(logits, labels):
    p = jnp.exp(logits - logits.max(axis=1, keepdims=True))
    p = p / p.sum(axis=1, keepdims=True)
    return (p - jnp.eye(logits.shape[1])[labels]) / logits.shape[0]
"""


def test_target_from_a_file_path_and_the_current_folder_at_the_users_inputs(
        tmp_path, monkeypatch, capsys):
    import numpy as np
    (tmp_path / "my_losses.py").write_text(USER_FILE)
    logits = np.random.default_rng(0).normal(size=(5, 4))
    labels = np.asarray([0, 3, 1, 1, 2])                         # integer labels
    np.savez(tmp_path / "named.npz", labels=labels, logits=logits)   # any order: by name
    np.savez(tmp_path / "ordered.npz", logits, labels)
    target = f"{tmp_path / 'my_losses.py'}:ce"
    for npz in ("named.npz", "ordered.npz"):
        assert cli.main(["audit", "--target", target, "--grad",
                         f"{tmp_path / 'my_losses.py'}:ce_grad",
                         "--args", str(tmp_path / npz)]) == 0
        assert "**PASS**" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)                                  # a module in this folder
    monkeypatch.delitem(sys.modules, "my_losses", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert cli.main(["audit", "--target", "my_losses:ce", "--args", "ordered.npz"]) == 0
    np.savez(tmp_path / "wrong.npz", logits=logits, targets=labels)
    assert cli.main(["audit", "--target", "my_losses:ce", "--args", "wrong.npz"]) == 2
    assert "arrays ['targets'] match no parameter" in capsys.readouterr().err


def test_generated_inputs_outside_a_declared_domain_are_warned_about(capsys):
    code = cli.main(["audit", "--target", "lossjax:gaussian_nll", "--shape", "6",
                     "--shape", "6", "--shape", "6", "--argnums", "0"])
    err = capsys.readouterr().err
    assert "warning: the generated inputs (standard normal) fall outside" in err
    assert "`var` must be" in err and "--args inputs.npz" in err
    assert code in (0, 1)


def test_catalogue_progress_without_tqdm(monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == "tqdm":
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    assert cli.main(["audit", "mse", "--dtype", "float64", "--kind", "generic"]) == 0
    assert "[1/1] mse" in capsys.readouterr().err
