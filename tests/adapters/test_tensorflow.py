"""Keras HDF5: the CIFAR-10 CNN of ``cifar-10-model`` (a Keras 2.9 full-model .h5), encoded,
decoded to .h5 and run (torch port of the Sequential model, no TensorFlow); a Keras 3 .keras
archive."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from nnr import adapters
from tests.adapters import _keras_cifar as K
from tests.adapters.conftest import max_rel, need, package_file


@pytest.fixture(scope="module")
def cifar():
    h5py = need("h5py", "'nnr[frameworks]'")
    need("torch", "'nnr[frameworks]'")
    path = package_file("cifar_10_model", "trained_models", "cnn_model.h5",
                        install="cifar-10-model==7.4.0 --no-deps")
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    with h5py.File(path, "r") as f:
        ref = K.forward(K.weights(f), images)
    return path, images, ref


def _same_tree(a, b) -> None:
    import h5py

    def visit(name, obj):
        other = b[name]
        assert sorted(obj.attrs) == sorted(other.attrs), name
        for key in obj.attrs:
            assert obj.attrs.get_id(key).dtype == other.attrs.get_id(key).dtype, (name, key)
            assert np.array_equal(np.asarray(obj.attrs[key]), np.asarray(other.attrs[key]))
        if isinstance(obj, h5py.Dataset):
            assert obj.dtype == other.dtype and obj.shape == other.shape, name
    a.visititems(visit)
    assert dict(a.attrs) == dict(b.attrs)


def test_cifar_h5_roundtrip(cifar, tmp_path):
    import h5py
    path, images, ref = cifar
    model = adapters.load(path)
    assert model.role("model_weights/conv2d/conv2d/kernel:0") == "weight"
    data = adapters.encode_model(model)
    assert len(data) < 0.1 * model.nbytes()
    out = tmp_path / "cifar.h5"
    adapters.save(adapters.decode_model(data), out)
    with h5py.File(path, "r") as a, h5py.File(out, "r") as b:
        _same_tree(a, b)
        got = K.forward(K.weights(b), images)
    assert max_rel(ref, got) < 0.1               # qp -38, default settings
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.75


def test_cifar_lossless_is_exact(cifar, tmp_path):
    import h5py
    path, images, ref = cifar
    out = tmp_path / "cifar.h5"
    model = adapters.decode_model(adapters.encode_model(adapters.load(path), lossless=True))
    adapters.save(model, out)
    with h5py.File(path, "r") as a, h5py.File(out, "r") as b:
        assert np.array_equal(K.forward(K.weights(b), images), ref)
        a.visititems(lambda n, o: None if not isinstance(o, h5py.Dataset)
                     else np.testing.assert_array_equal(o[()], b[n][()]))


def test_keras3_archive_roundtrip(tmp_path):
    h5py = need("h5py", "'nnr[frameworks]'")
    rng = np.random.default_rng(4)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        layer = f.create_group("layers/dense/vars")
        layer.create_dataset("0", data=rng.normal(size=(16, 8)).astype(np.float32))
        layer.create_dataset("1", data=rng.normal(size=8).astype(np.float32))
        f.attrs["note"] = "weights"
    src = tmp_path / "m.keras"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("metadata.json", '{"keras_version": "3.4.1"}')
        z.writestr("config.json", '{"class_name": "Sequential"}')
        z.writestr("model.weights.h5", buf.getvalue())
    out = tmp_path / "back.keras"
    adapters.save(adapters.decode_model(adapters.encode_model(adapters.load(src),
                                                              lossless=True)), out)
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b:
        assert a.namelist() == b.namelist()
        assert a.read("config.json") == b.read("config.json")
        with h5py.File(io.BytesIO(a.read("model.weights.h5"))) as fa, \
                h5py.File(io.BytesIO(b.read("model.weights.h5"))) as fb:
            _same_tree(fa, fb)
            assert np.array_equal(fa["layers/dense/vars/0"][()], fb["layers/dense/vars/0"][()])
