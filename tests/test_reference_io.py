"""MNIST loader and the reference checkpoint format."""
import numpy as np
import pytest
import torch

from gradflow import (
    ModelConfig,
    TwoLayerNet,
    export_reference_checkpoint,
    load_reference_checkpoint,
)
from gradflow.mnist import load_mnist, md5sum, read_idx


def test_mnist_shared_test_split(mnist_dir):
    assert md5sum(mnist_dir / "t10k-images-idx3-ubyte.gz") == "9fb629c4189551a2d022fa330f9573f3"
    raw = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert raw.shape == (10000,) and set(np.unique(raw)) == set(range(10))
    m = load_mnist(mnist_dir, labels="digits", test_fraction=0.25, seed=3)
    assert not m.official_split and "seeded split" in m.split_note
    assert m.X_train.shape == (7500, 784) and m.X_test.shape == (2500, 784)
    assert 0.0 <= m.X_train.min() and m.X_train.max() <= 1.0
    again = load_mnist(mnist_dir, test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(m.y_test, again.y_test)
    other = load_mnist(mnist_dir, test_fraction=0.25, seed=4)
    assert not np.array_equal(m.y_test, other.y_test)


def test_mnist_label_maps_and_centring(mnist_dir):
    m = load_mnist(mnist_dir, labels="parity", center=True, flatten=False)
    assert m.n_classes == 2 and m.X_train.shape[1:] == (28, 28)
    np.testing.assert_array_equal(m.y_train, m.digits_train % 2)
    np.testing.assert_allclose(m.X_train.mean(axis=0), 0.0, atol=1e-5)
    c = load_mnist(mnist_dir, labels=lambda d: (d >= 5).astype(int))
    np.testing.assert_array_equal(c.y_test, (c.digits_test >= 5).astype(int))
    with pytest.raises(ValueError, match="`labels` must be 'digits', 'parity' or a callable"):
        load_mnist(mnist_dir, labels="odd")


def test_mnist_missing_files_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADFLOW_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="Looked in") as err:
        load_mnist(tmp_path / "explicit")
    assert "explicit" in str(err.value) and "GRADFLOW_DATA" in str(err.value)


def test_mnist_md5_mismatch(tmp_path, mnist_dir):
    import shutil

    shutil.copy(mnist_dir / "t10k-labels-idx1-ubyte.gz", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="md5 mismatch"):
        load_mnist(tmp_path)


def _idx(path, arr: np.ndarray) -> None:
    """Write a raw (uncompressed) IDX file of unsigned bytes."""
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(head + arr.astype(np.uint8).tobytes())


def test_mnist_files_are_checked_against_each_other(tmp_path):
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    _idx(tmp_path / "t10k-images-idx3-ubyte", images)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5))  # one label short
    with pytest.raises(ValueError, match="do not form a split"):
        load_mnist(tmp_path)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 4, 200]))
    with pytest.raises(ValueError, match="must be digits 0..9"):
        load_mnist(tmp_path)


def test_truncated_gzip_names_the_file(tmp_path, mnist_dir):
    data = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")


def _reference_forward(state, x, p):
    """The reference implementation's forward pass, written out independently."""
    xc = x - state["center"]
    W = state["prelulayer.W"]
    z = torch.relu(xc @ W) ** p
    z = z / (W.norm(dim=0, keepdim=True) ** (p - 1)) / (xc.norm(dim=1, keepdim=True) ** (p - 1))
    return z @ state["output_net.weight"].T + state["output_net.bias"]


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 4.0])
def test_reference_checkpoint_round_trip(p, tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {
        "center": torch.rand(1, 784, generator=g, dtype=torch.float64) * 0.3,
        "prelulayer.W": torch.randn(784, 500, generator=g, dtype=torch.float64) * 0.05,
        "output_net.weight": torch.randn(10, 500, generator=g, dtype=torch.float64) * 0.05,
        "output_net.bias": torch.randn(10, generator=g, dtype=torch.float64),
    }
    torch.save(state, tmp_path / "ref.pt")
    net = load_reference_checkpoint(str(tmp_path / "ref.pt"), p=p, dtype=torch.float64)
    x = torch.rand(64, 784, generator=g, dtype=torch.float64)
    torch.testing.assert_close(net(x), _reference_forward(state, x, p), rtol=1e-12, atol=1e-12)
    back = export_reference_checkpoint(net)
    for k, t in state.items():
        torch.testing.assert_close(back[k], t, rtol=0, atol=0)


def test_reference_checkpoint_errors():
    with pytest.raises(ValueError, match="missing reference checkpoint key"):
        load_reference_checkpoint({"center": torch.zeros(1, 3)}, p=1.0)
    net = TwoLayerNet(ModelConfig(width=3), 4)
    with pytest.raises(ValueError, match="`net` must be a pReLU net"):
        export_reference_checkpoint(net)


def test_study_mnist_cuts_train_and_eval(mnist_dir):
    from gradflow.studies import load_study_mnist

    cfg = {"mnist_path": str(mnist_dir), "test_fraction": 0.2, "n_train": 500, "n_eval": 64}
    m = load_study_mnist(cfg, seed=1, labels="parity")
    assert m.X_train.shape == (500, 784) and m.y_train.shape == (500,)
    assert m.X_eval.dtype == torch.float32 and m.X_eval.shape == (64, 784)
    np.testing.assert_array_equal(m.y_eval.numpy(), m.data.y_test[:64])
    full = load_study_mnist({**cfg, "n_train": 0, "n_eval": 10**6}, seed=1)
    assert len(full.y_train) == 8000 and len(full.y_eval) == 2000  # 0: all; n_eval capped
    with pytest.raises(ValueError, match="`n_train` must be >= 0"):  # was X_train[:-5]
        load_study_mnist({**cfg, "n_train": -5}, seed=1)


def test_mnist_loader_arguments_are_checked(mnist_dir):
    with pytest.raises(ValueError, match="`test_fraction` 1e-05 of the 10000 images leaves an "
                                         "empty split"):
        load_mnist(mnist_dir, test_fraction=1e-5)
    for seed in (-1, 1.5):
        with pytest.raises(ValueError, match="`seed` must be"):
            load_mnist(mnist_dir, seed=seed)
    with pytest.raises(ValueError, match="`center` must be True or False"):
        load_mnist(mnist_dir, center="no")
