"""The five synthetic studies (sims/sec51, radius_vs_k, alignment_time, gf_vs_sgd, p_sweep).

Each study's smoke preset runs once per session (module fixtures); the tests assert
the documented summary keys and the qualitative result the study exists to show.
Study helpers (sup-distance, slopes, bootstrap, G*) are tested against closed forms.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from gradflow.studies import get_study, run_study
from gradflow.studies.summary import CHECK_KEYS, SUMMARY_KEYS


def _module(name: str):
    get_study(name)
    return sys.modules[f"gradflow_sims.{name}"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run each smoke preset at most once for the whole module."""
    done = {}
    base = tmp_path_factory.mktemp("synthetic")

    def get(name):
        if name not in done:
            done[name] = run_study(name, "smoke", out=base / name, cache_dir=base / "cache",
                                   results_md=False)
        return done[name]

    return get


def _check(summary, start: str) -> dict:
    hits = [c for c in summary["checks"] if c["claim"].startswith(start)]
    assert hits, f"no check starting with {start!r}"
    return hits[0]


@pytest.mark.parametrize("name", ["sec51", "radius_vs_k", "alignment_time", "gf_vs_sgd",
                                  "p_sweep"])
def test_summary_schema_and_figures(runs, name):
    run = runs(name)
    s = run.summary
    assert set(SUMMARY_KEYS) <= set(s)
    assert s["checks"], "a study must test at least one prediction"
    for c in s["checks"]:
        assert tuple(c) == CHECK_KEYS
        assert c["agrees"] in (True, False, None)
    assert s["figures"] and all((run.out_dir / f).is_file() for f in s["figures"])
    assert (run.out_dir / "arrays.npz").is_file()


# -- qualitative results (the smoke presets are small; the margins say why they hold) ------

def test_sec51_p3_radius_exceeds_p1(runs):
    m = runs("sec51").summary["metrics"]
    # theory ratio sqrt(2)/2 * sqrt(10) = 2.24; 1.5 leaves room for the short smoke training
    assert m["median_radius_p3"] >= 1.5 * m["median_radius_p1"]
    # F's radius 1/sqrt(10) = 0.316 at a centre; 20% for alpha = 0.05 noise and finite training
    assert m["median_radius_p1"] == pytest.approx(1 / np.sqrt(10), rel=0.2)
    assert _check(runs("sec51").summary, "p=1: dominant neurons aligned")["agrees"] is True


def test_radius_vs_k_slopes(runs):
    m = runs("radius_vs_k").summary["metrics"]
    for method in ("ode", "sgd"):
        assert m[f"slope_{method}_p1"] < -0.3  # theory -0.5 (radius 1/sqrt(K))
        assert abs(m[f"slope_{method}_p3"]) < 0.15  # theory 0 (radius sqrt(2)/2 for every K)


def test_alignment_time_slope_ratio(runs):
    m = runs("alignment_time").summary["metrics"]
    # slopes 1/G*: K/sqrt(K1) = 4.08 (p=1), K = 10 (p=3); 10% for the sample potential
    # (n = 100, alpha = 0.02) and three eps only
    assert m["slope_p1"] == pytest.approx(10 / np.sqrt(6), rel=0.1)
    assert m["slope_p3"] == pytest.approx(10.0, rel=0.1)
    assert m["slope_p3"] / m["slope_p1"] == pytest.approx(np.sqrt(6), rel=0.1)


def test_gf_vs_sgd_same_limit(runs):
    s = runs("gf_vs_sgd").summary
    m = s["metrics"]
    assert m["covered_p3_ode"] == m["covered_p3_gd"] == m["covered_p3_sgd"]
    for p in (1, 3):
        r = [m[f"median_radius_p{p}_{k}"] for k in ("ode", "gd", "sgd")]
        assert max(r) / min(r) - 1 < 0.05  # same extremal vectors => same classifier
    assert m["median_radius_p3_sgd"] > 1.5 * m["median_radius_p1_sgd"]


def test_p_sweep_degenerate_only_at_p2(runs):
    s = runs("p_sweep").summary
    assert _check(s, "p=2: maximisers form a continuum")["agrees"] is True
    assert _check(s, "p=3: number of distinct maximisers")["agrees"] is True  # the K1 centres
    for p in ("1", "3"):  # exact F_p radius at a centre vs its closed form
        assert _check(s, f"p={p}: exact radius of F_p")["agrees"] is True
    assert _check(s, "p=3: maximiser kind")["agrees"] is True
    assert _check(s, "p=3: trained dominant neurons on centres")["agrees"] is True


# -- helpers against closed forms ----------------------------------------------------------

def test_loglog_slope_and_bootstrap():
    mod = _module("radius_vs_k")
    Ks = [4, 8, 16, 32]
    assert mod.loglog_slope(Ks, 3.0 / np.sqrt(Ks)) == pytest.approx(-0.5, abs=1e-12)
    assert mod.loglog_slope(Ks, [0.7] * 4) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(mod.loglog_slope(Ks, [0.7, 0.0, 0.7, 0.7]))
    x = np.random.default_rng(0).normal(1.0, 0.1, 400)
    med, lo, hi = mod.bootstrap_median(x, 500, np.random.default_rng(1))
    # the median of 400 N(1, 0.1) draws lies within ~0.015 of 1; the interval contains it
    assert lo < med < hi and lo < 1.0 < hi and hi - lo < 0.05


def test_radius_vs_k_unbroken_point_keeps_the_cell():
    """One never-broken test point (inf) must not turn the cell's median into NaN."""
    mod = _module("radius_vs_k")
    radii = np.full((1, 3, 1, 5), np.nan)  # (p, K, seeds, n_test); K index 1 not run
    radii[0, 0, 0] = [0.4, 0.5, 0.5, 0.6, np.inf]
    radii[0, 2, 0] = [0.2, 0.25, 0.25, 0.3, 0.3]
    med = mod.cell_medians(radii, 50, np.random.default_rng(0))
    assert med[0, 0, 0] == pytest.approx(0.5) and np.all(np.isfinite(med[0, 0]))
    assert med[0, 2, 0] == pytest.approx(0.25)
    assert np.all(np.isnan(med[0, 1]))
    assert np.isfinite(mod.loglog_slope([4, 16], med[0, [0, 2], 0]))


def test_radius_vs_k_sgd_batches_follow_the_run_seed():
    mod = _module("radius_vs_k")
    cfg = {**mod.DEFAULTS, "Ks": [4, 8], "ps": [1.0], "seeds": 2}
    (m0, r0), (m1, _) = mod.sgd_members(cfg, 0), mod.sgd_members(cfg, 1)
    assert r0 == [0, 1, 0, 1]
    assert len({m.seed for m in m0 if m.data.K == 4}) == 2  # repeats stay distinct
    assert {m.seed for m in m0}.isdisjoint(m.seed for m in m1)
    assert [m.seed for m in m0] == [m.seed for m in mod.sgd_members(cfg, 0)[0]]


@pytest.mark.parametrize("K,K1", [(4, 2), (10, 6), (32, 16)])
def test_g_star_closed_forms(K, K1):
    g_rvk = _module("radius_vs_k").g_star
    g_at = _module("alignment_time").g_star
    g_ps = _module("p_sweep").g_star_closed_form
    assert g_rvk(K, K1, 1.0) == pytest.approx(np.sqrt(K1) / K, rel=1e-12)
    assert g_rvk(K, K1, 3.0) == pytest.approx(1.0 / K, rel=1e-12)
    assert g_at(K, K1, 1.0)[0] == pytest.approx(np.sqrt(K1) / K, rel=1e-12)
    assert g_ps(1.5, K, K1) == pytest.approx(K1 ** 0.25 / K, rel=1e-12)
    assert g_ps(2.0, K, K1) == pytest.approx(1.0 / K, rel=1e-12)


@pytest.mark.parametrize("name,override,match", [
    ("sec51", "ps=[1.0, 2.0]", "`ps`"),
    ("sec51", "n_attack=100000", "`n_attack`"),
    ("sec51", "radii=[0.5, 0.1]", "`radii`"),
    ("sec51", "train_dtype=float17", "`train_dtype`"),
    ("gd_alignment", "top=0", "`top`"),
    ("gd_alignment", "top=-1", "`top`"),
    ("gd_alignment", "top=21", "`top`"),
    ("radius_vs_k", "Ks=[4, 6, 5]", "`Ks`"),
    ("radius_vs_k", "D=8", "`D`"),
    ("radius_vs_k", "methods=['adam']", "`methods`"),
    ("alignment_time", "eps=[0.0001, 0.01]", "`eps`"),
    ("alignment_time", "K1=4", "`K1` must be >= K - K1"),
    ("gf_vs_sgd", "n=250", "`n`"),
    ("p_sweep", "ps=[0.5]", "`ps`"),
])
def test_bad_config_names_the_key(tmp_path, name, override, match):
    with pytest.raises(ValueError, match=match):
        run_study(name, "smoke", overrides=[override], out=tmp_path / "o",
                  cache_dir=tmp_path / "c", results_md=False)
