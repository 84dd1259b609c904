"""Study framework: config layering, registry discovery, cache keys, summary schema, results.md."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gradflow.io import load_json
from gradflow.studies import (
    Check,
    StudyUnavailable,
    get_study,
    make_check,
    replot,
    resolve_config,
    run_study,
    validate_summary,
    verdict_table,
    within,
)
from gradflow.studies.cache import RunCache
from gradflow.studies.config import apply_overrides, check_against, parse_override
from gradflow.studies.results_md import update_results_md

# A tiny real study: the sample mean of N(mu, 1) draws against mu, with a 5-sigma tolerance.
TOY = '''
import numpy as np
from gradflow.studies import Study, StudyOutput, make_check, register_study
COUNTER = {counter!r}

def run(cfg, ctx):
    with open(COUNTER, "a") as fh:
        fh.write("run\\n")
    x = ctx.rng(1).normal(cfg["mu"], 1.0, size=cfg["n"])
    m = float(x.mean())
    # 5 standard errors: a correct estimator fails this with probability < 1e-6
    return StudyOutput(checks=[make_check("mean of N(mu,1) samples = mu", theory=cfg["mu"],
                                          measured=m, atol=5 / np.sqrt(cfg["n"]))],
                       arrays={{"x": x}}, metrics={{"mean": m}})

def plot(arrays, summary, fig_dir):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.hist(arrays["x"], bins=20)
    out = fig_dir / "hist.png"
    fig.savefig(out)
    plt.close(fig)
    return [out]

register_study(Study(name="{name}", run=run, plot=plot, defaults={{"mu": 0.0, "n": 100,
                     "tags": ["a"], "opt": {{"k": 1}}}},
                     presets={{"quick": {{}}, "paper": {{"n": 10000}}, "smoke": {{"n": 10}}}}))
'''


@pytest.fixture
def sims(tmp_path, monkeypatch):
    folder = tmp_path / "sims"
    folder.mkdir()
    counter = tmp_path / "runs.log"
    (folder / "toy_mean.py").write_text(TOY.format(name="toy_mean", counter=str(counter)))
    (folder / "needs_missing.py").write_text("import gradflow_module_that_does_not_exist\n")
    (folder / "forgets.py").write_text("x = 1\n")
    monkeypatch.setenv("GRADFLOW_SIMS", str(folder))
    monkeypatch.chdir(tmp_path)
    import gradflow.studies.registry as reg

    reg._REGISTRY.pop("toy_mean", None)  # each test loads its own copy (own counter file)
    yield tmp_path, counter
    reg._REGISTRY.pop("toy_mean", None)


def _runs(counter):
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_config_layers_in_order(sims, tmp_path):
    study = get_study("toy_mean")
    assert resolve_config(study, "quick")["n"] == 100
    assert resolve_config(study, "paper")["n"] == 10000
    f = tmp_path / "c.yaml"
    f.write_text("n: 7\nmu: 1\nseed: 3\n")
    cfg = resolve_config(study, "paper", f)  # file beats preset; ints accepted for floats
    assert cfg["n"] == 7 and cfg["mu"] == 1.0 and isinstance(cfg["mu"], float)
    cfg = resolve_config(study, "paper", f, ["n=9", "opt.k=2"], seed=5)  # --set beats file
    assert cfg["n"] == 9 and cfg["opt"] == {"k": 2} and cfg["seed"] == 5
    with pytest.raises(ValueError, match=r"`opt\.j`"):
        resolve_config(study, "quick", overrides=["opt.j=1"])
    with pytest.raises(ValueError, match=r"`tags\[0\]` must be a string"):
        resolve_config(study, "quick", overrides=["tags=[1]"])
    with pytest.raises(ValueError, match=r"`n` is a single value \(default 100\), not a section"):
        resolve_config(study, "quick", overrides=["n.k=1"])
    with pytest.raises(ValueError, match=r"`preset` must be one of"):
        resolve_config(study, "fast")
    # the Python API honours a file's preset unless one is passed (as the CLI does)
    g = tmp_path / "p.yaml"
    g.write_text("preset: paper\n")
    assert resolve_config(study, config_file=g)["n"] == 10000
    assert resolve_config(study, "quick", g)["n"] == 100
    assert resolve_config(study)["preset"] == "quick"


def test_override_parsing_types():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a=0.5") == ("a", 0.5)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=x: y: z")[1] == "x: y: z"  # invalid YAML stays text
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ValueError, match="`x` must be an integer"):
        check_against({"x": 1}, {"x": True})


def test_registry_errors(sims):
    with pytest.raises(StudyUnavailable, match="`needs_missing` is not available"):
        get_study("needs_missing")
    with pytest.raises(ValueError, match="did not call register_study"):
        get_study("forgets")
    with pytest.raises(ValueError, match="unknown study `nope`.*toy_mean"):
        get_study("nope")


def test_run_cache_and_outputs(sims):
    tmp, counter = sims
    md = tmp / "results.md"
    r1 = run_study("toy_mean", "smoke", out=tmp / "o", results_md=md, cache_dir=tmp / "c")
    assert not r1.cached and _runs(counter) == 1
    s = load_json(tmp / "o" / "summary.json")
    validate_summary(s)
    assert s["checks"][0]["agrees"] is True and s["figures"] == ["figures/hist.png"]
    assert (tmp / "o" / "figures" / "hist.png").is_file()
    assert "effective_config.yaml" in {p.name for p in (tmp / "o").iterdir()}
    # unchanged rerun: cache hit, nothing recomputed, same arrays, even into a new folder
    r2 = run_study("toy_mean", "smoke", out=tmp / "o2", results_md=md, cache_dir=tmp / "c")
    assert r2.cached and _runs(counter) == 1 and r2.key == r1.key
    assert np.array_equal(np.load(tmp / "o2" / "arrays.npz")["x"],
                          np.load(tmp / "o" / "arrays.npz")["x"])
    # any changed value (seed, a parameter) is a new key and a fresh computation
    r3 = run_study("toy_mean", "smoke", seed=1, out=tmp / "o3", results_md=md, cache_dir=tmp / "c")
    assert not r3.cached and r3.key != r1.key and _runs(counter) == 2
    # force recomputes the same key
    run_study("toy_mean", "smoke", out=tmp / "o", results_md=md, cache_dir=tmp / "c", force=True)
    assert _runs(counter) == 3


def test_editing_the_study_script_invalidates_the_cache(sims):
    tmp, counter = sims
    run_study("toy_mean", "smoke", out=tmp / "o", results_md=False, cache_dir=tmp / "c")
    script = tmp / "sims" / "toy_mean.py"
    script.write_text(script.read_text() + "\n# edited\n")
    import gradflow.studies.registry as reg

    reg._REGISTRY.pop("toy_mean")  # a new process would re-import the edited file
    r = run_study("toy_mean", "smoke", out=tmp / "o", results_md=False, cache_dir=tmp / "c")
    assert not r.cached and _runs(counter) == 2


def test_new_input_files_invalidate_the_cache(sims, monkeypatch):
    # the MNIST studies read files found outside their config (study_mnist_source): when the
    # official train split appears, a cached result of the 10k-test-split run must not return
    tmp, counter = sims
    study = get_study("toy_mean")
    import dataclasses

    import gradflow.studies.registry as reg

    found = {"files": ["t10k"]}
    monkeypatch.setitem(reg._REGISTRY, "toy_mean",
                        dataclasses.replace(study, data_key=lambda cfg: dict(found)))
    r1 = run_study("toy_mean", "smoke", out=tmp / "o", results_md=False, cache_dir=tmp / "c")
    r2 = run_study("toy_mean", "smoke", out=tmp / "o", results_md=False, cache_dir=tmp / "c")
    assert r2.cached and r2.key == r1.key
    found["files"] = ["t10k", "train"]
    r3 = run_study("toy_mean", "smoke", out=tmp / "o", results_md=False, cache_dir=tmp / "c")
    assert not r3.cached and r3.key != r1.key and _runs(counter) == 2


def test_mnist_source_names_the_files_found(tmp_path):
    from gradflow.mnist import mnist_source

    d = tmp_path / "m"
    d.mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / stem).write_bytes(b"x" * 7)
    src = mnist_source(d)
    assert src["folder"] == str(d.resolve())
    assert src["files"] == {"test_images": ["t10k-images-idx3-ubyte", 7],
                            "test_labels": ["t10k-labels-idx1-ubyte", 7]}
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (d / stem).write_bytes(b"y")
    assert set(mnist_source(d)["files"]) == {"test_images", "test_labels", "train_images",
                                             "train_labels"}


def test_failed_run_leaves_no_cache_entry(tmp_path):
    cache = RunCache(tmp_path)
    with pytest.raises(RuntimeError):
        with cache.staging("study", "x", "k") as d:
            (d / "summary.json").write_text("{}")
            raise RuntimeError("crash mid-run")
    entry = cache.entry("study", "x", "k")
    assert not entry.exists() and not cache.is_complete(entry)
    assert list(entry.parent.iterdir()) == []  # the staging folder was removed too


def test_identical_runs_finishing_together_both_succeed(tmp_path, monkeypatch):
    # the old entry was deleted in place and then replaced: a second finisher failed with
    # "Directory not empty" after all its compute (the window widened here by a slow rename)
    import os
    import threading
    import time

    import gradflow.studies.cache as cache_mod

    real = os.replace

    def slow_replace(a, b):
        time.sleep(0.1)
        return real(a, b)

    monkeypatch.setattr(cache_mod.os, "replace", slow_replace)
    cache, errors = RunCache(tmp_path), []

    def finish(i):
        try:
            with cache.staging("study", "x", "k") as d:
                (d / "v").write_text(str(i))
        except Exception as err:  # noqa: BLE001 (collected and asserted below)
            errors.append(repr(err))

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entry = cache.entry("study", "x", "k")
    assert errors == [] and cache.is_complete(entry)
    assert [p.name for p in entry.parent.iterdir()] == ["k"]  # no staging or aside left


def test_replot_uses_saved_results_only(sims):
    tmp, counter = sims
    run_study("toy_mean", "smoke", out=tmp / "o", results_md=False, cache_dir=tmp / "c")
    (tmp / "o" / "figures" / "hist.png").unlink()
    figs = replot(tmp / "o")
    assert [f.name for f in figs] == ["hist.png"] and figs[0].is_file()
    assert _runs(counter) == 1  # plotting never reruns the study


def test_results_md_sections_do_not_clobber(tmp_path):
    md = tmp_path / "r.md"
    update_results_md(md, "a", "quick", "A1")
    update_results_md(md, "b", "quick", "B1")
    update_results_md(md, "a", "paper", "AP")
    update_results_md(md, "a", "quick", "A2")
    text = md.read_text()
    assert "A2" in text and "A1" not in text and "B1" in text and "AP" in text
    assert text.count("<!-- results:a:quick -->") == 1
    # a lost end marker (a hand edit): the lazy start..end match used to swallow every
    # section up to the end marker appended by the next update
    update_results_md(md, "c", "quick", "C1")
    md.write_text(md.read_text().replace("<!-- /results:b:quick -->", ""))
    before = md.read_text()
    with pytest.raises(ValueError, match=r"r\.md: the section markers <!-- results:b:quick -->"):
        update_results_md(md, "b", "quick", "B2")
    assert md.read_text() == before  # nothing rewritten
    update_results_md(md, "c", "quick", "C2")  # intact sections still update
    assert "C2" in md.read_text() and "AP" in md.read_text()


def test_check_schema_and_verdicts():
    c = make_check("x", theory=1.0, measured=1.05, rtol=0.1)
    assert c.agrees is True and make_check("x", theory=1.0, measured=1.2, rtol=0.1).agrees is False
    assert make_check("x", theory=1.0, measured=float("nan"), rtol=0.1).agrees is None
    assert within(np.float32(0.5), 0.5) is True
    d = Check("claim", theory=np.float64(2.0), measured=np.array([1, 2]), paper=None).to_dict()
    assert list(d) == ["claim", "theory", "paper", "measured", "agrees"]
    json.dumps(d)
    with pytest.raises(ValueError, match="`claim`"):
        Check("")
    with pytest.raises(ValueError, match="`agrees`"):
        Check("c", agrees="yes")
    with pytest.raises(ValueError, match="missing the key"):
        validate_summary({"checks": []})
    table = verdict_table([d, Check("b|c", 1, 0.5, 0.7, False).to_dict()], markdown=True)
    assert "| prediction | theory | paper | measured | agrees? |" in table
    assert "b\\|c" in table and "| NO |" in table
    text = verdict_table([Check("p", 0.70710678, 0.7, None, True).to_dict()])
    assert "0.7071" in text and "yes" in text and "paper" not in text


def test_shipped_example_study_agrees_with_theory(tmp_path):
    """gd_alignment smoke preset: every prediction (growth rates, alignment, O(lr) drift) holds."""
    run = run_study("gd_alignment", "smoke", out=tmp_path / "o", results_md=False,
                    cache_dir=tmp_path / "c")
    checks = run.summary["checks"]
    assert len(checks) == 6 and all(c["agrees"] is True for c in checks), checks


def test_overrides_read_exponent_floats_as_numbers(tmp_path):
    """PyYAML follows YAML 1.1, where 1e-4 (no dot) is a string; configs must read it as 0.0001."""
    from gradflow.studies.config import load_yaml, parse_override

    assert parse_override("eps=[1e-4, 1e-2]") == ("eps", [1e-4, 1e-2])
    assert parse_override("lr=2E+1") == ("lr", 20.0)
    assert parse_override("name=abc") == ("name", "abc")
    path = tmp_path / "c.yaml"
    path.write_text("eps: 1e-7\nalpha: 0.1\nwidth: 50\n")
    assert load_yaml(path) == {"eps": 1e-7, "alpha": 0.1, "width": 50}
