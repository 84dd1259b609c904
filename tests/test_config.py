"""Every invalid config value raises ValueError naming the parameter and its range."""
import math

import pytest

from gradflow import DataConfig, InitConfig, ModelConfig, config_hash, get_activation

DATA_BAD = [
    (dict(K=1), r"`K` must be >= 2"),
    (dict(K=10, K1=11), r"`K1` must be <= 9"),
    (dict(K1=0), r"`K1` must be >= 1"),
    (dict(K=10, D=5), r"`D` must be >= 10"),
    (dict(alpha=-0.1), r"`alpha` must lie in \[0.0, inf\]"),
    (dict(alpha=math.nan), r"`alpha` must be finite"),
    (dict(alpha=math.inf), r"`alpha` must be finite"),
    (dict(n=0), r"`n` must be >= 1"),
    (dict(n=2.5), r"`n` must be an integer"),
    (dict(centres="sphere"), r"`centres` must be one of 'basis', 'random-orthonormal'"),
    (dict(centres="correlated", cosine=1.0), r"`cosine` must lie in \(-0.111"),
    (dict(centres="correlated", cosine=-0.2), r"`cosine` must lie in \(-0.111"),
    (dict(centres="basis", cosine=0.3), r"`cosine` is only used with centres='correlated'"),
    (dict(sizes="weird"), r"`sizes` must be one of 'random', 'equal'"),
    (dict(seed=-1), r"`seed` must be >= 0"),
]


@pytest.mark.parametrize("kwargs,msg", DATA_BAD)
def test_data_config_rejects(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        DataConfig(**kwargs)


MODEL_BAD = [
    (dict(width=0), r"`width` must be >= 1"),
    (dict(p=0.5), r"`p` must lie in \[1.0, inf\]"),
    (dict(p=math.nan), r"`p` must be finite"),
    (dict(activation="sigmoidish"), r"`activation` must be one of 'prelu'"),
    (dict(beta=0.0), r"`beta` must lie in \(0.0, inf\]"),
    (dict(a=-1.0), r"`a` must lie in \(0.0, inf\]"),
    (dict(n_outputs=0), r"`n_outputs` must be >= 1"),
    (dict(bias=1), r"`bias` must be True or False"),
]


@pytest.mark.parametrize("kwargs,msg", MODEL_BAD)
def test_model_config_rejects(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        ModelConfig(**kwargs)


INIT_BAD = [
    (dict(eps=0.0), r"`eps` must lie in \(0.0, inf\]"),
    (dict(eps=-1e-6), r"`eps` must lie in \(0.0, inf\]"),
    (dict(eps=math.inf), r"`eps` must be finite"),
    (dict(mode="lazy"), r"`mode` must be one of 'balanced', 'independent', 'nudged'"),
    (dict(delta=1.5), r"`delta` must lie in \[0.0, 1.0\]"),
    (dict(seed=-3), r"`seed` must be >= 0"),
    # unused outside mode='nudged', where they would change the hash but not the run
    (dict(delta=0.5), r"`delta` and `target` are only used with mode='nudged'"),
    (dict(target=2, mode="independent"), r"`delta` and `target` are only used with"),
]


@pytest.mark.parametrize("kwargs,msg", INIT_BAD)
def test_init_config_rejects(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        InitConfig(**kwargs)


def test_activation_spec_errors():
    with pytest.raises(ValueError, match=r"`activation` must be one of"):
        get_activation("swishy")
    with pytest.raises(ValueError, match=r"`p` must lie in \[1.0, inf\]"):
        get_activation("prelu:p=0.5")
    with pytest.raises(ValueError, match=r"expected key=value"):
        get_activation("prelu:p")
    with pytest.raises(ValueError, match=r"is not a number"):
        get_activation("prelu:p=abc")
    assert get_activation("prelu:p=3").params == {"p": 3.0}


def test_configs_are_frozen_and_round_trip():
    cfg = DataConfig(K=4, K1=2, D=8)
    with pytest.raises(AttributeError):
        cfg.K = 5
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bogus'\]"):
        DataConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_config_hash_changes_with_any_field():
    a = DataConfig()
    assert config_hash(a) == config_hash(DataConfig())
    assert config_hash(a) != config_hash(a.replace(alpha=0.2))
    assert config_hash(a) != config_hash(a, extra={"steps": 1})


def test_config_hash_depends_on_library_source(monkeypatch):
    """An edit of the numerical code (same version string) must give new result keys."""
    import gradflow.config as gc

    assert len(gc.library_fingerprint()) == 16
    a = DataConfig()
    before = config_hash(a)
    monkeypatch.setattr(gc, "library_fingerprint", lambda: "edited-source")
    assert config_hash(a) != before


def test_checked_values_are_stored_normalised():
    # p=1 and K=np.int64(10) used to stay int / numpy in the config: equal configs then
    # hashed differently and to_dict() could not be written as JSON.
    import json

    import numpy as np

    assert config_hash(ModelConfig(p=1)) == config_hash(ModelConfig(p=1.0))
    d = DataConfig(K=np.int64(10), alpha=np.float32(0.25))
    assert config_hash(d) == config_hash(DataConfig(alpha=0.25))
    assert type(d.K) is int and type(d.alpha) is float
    json.dumps(d.to_dict())
    m = ModelConfig(bias=np.bool_(True))
    assert m.bias is True and m == ModelConfig(bias=True)
