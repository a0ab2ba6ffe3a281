"""NNEF: the CIFAR-10 CNN exported as an NNEF folder (graph.nnef + .dat files), encoded,
decoded to a folder and run with the NNEF reference runtime (package ``nnef``)."""
from __future__ import annotations

import numpy as np
import pytest

import nnr
from nnr import adapters
from nnr.adapters import nnef as nnefa
from tests.adapters import _keras_cifar as K
from tests.adapters.conftest import max_rel, need, package_file


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    h5py = need("h5py", "'nnr[frameworks]'")
    path = package_file("cifar_10_model", "trained_models", "cnn_model.h5",
                        install="cifar-10-model==7.4.0 --no-deps")
    with h5py.File(path, "r") as f:
        files = K.nnef_files(K.weights(f))
    folder = tmp_path_factory.mktemp("nnef") / "cifar.nnef"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    image = np.random.default_rng(1).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    return folder, image, _run(folder, image)


def _run(folder, image):
    nnef = need("nnef", "'nnr[frameworks]'")
    with nnef.Session(str(folder), stdlib="", lowered=["batch_normalization"]) as session:
        return session(image)[0]


def test_dat_files_match_the_nnef_package(exported):
    nnef = need("nnef", "'nnr[frameworks]'")
    folder, _, _ = exported
    graph = nnef.load_graph(str(folder))
    model = adapters.load(folder)
    assert len(model.tensors) == 42             # 6 conv x 2, 6 batch-norm x 4, 3 dense x 2
    for tensor in graph.tensors.values():
        if tensor.data is not None and tensor.data.size:
            label = next(op.attribs["label"] for op in graph.operations
                         if op.name == "variable" and op.outputs["output"] == tensor.name)
            assert np.array_equal(model.tensors[label], tensor.data)
    for label, array in model.tensors.items():
        assert nnefa.write_tensor(array) == (folder / f"{label}.dat").read_bytes()


def test_nnef_roundtrip_runs(exported, tmp_path):
    folder, image, ref = exported
    model = adapters.load(folder)
    assert model.role("conv2d/filter") == "weight" and model.role("batch_normalization/moving_variance") == "bn.var"
    data = adapters.encode_model(model)
    decoded = nnr.decode_stream(data)
    assert decoded.topology.storage_format == 1
    assert len(data) < 0.25 * model.nbytes()
    out = tmp_path / "out.nnef"
    adapters.save(adapters.decode_model(data), out)
    got = _run(out, image)
    assert max_rel(ref, got) < 0.1
    lossless = tmp_path / "exact.nnef.tgz"
    adapters.save(adapters.decode_model(adapters.encode_model(model, lossless=True)), lossless)
    back = adapters.load(lossless)
    assert all(np.array_equal(back.tensors[k], v) for k, v in model.tensors.items())


def test_non_float32_dat_headers_are_kept(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "graph.nnef").write_text(
        "version 1.0;\ngraph g( x ) -> ( y )\n{\n"
        "    x = external<scalar>(shape = [1, 4]);\n"
        "    w = variable<scalar>(shape = [3, 4], label = 'w');\n"
        "    k = variable<integer>(shape = [3], label = 'k');\n"
        "    y = linear(x, w);\n}\n")
    (folder / "w.dat").write_bytes(nnefa.write_tensor(np.arange(12, dtype=np.float16).reshape(3, 4)))
    (folder / "k.dat").write_bytes(nnefa.write_tensor(np.array([1, -2, 3], np.int8)))
    out = tmp_path / "back"
    adapters.save(adapters.decode_model(adapters.encode_model(adapters.load(folder),
                                                              lossless=True)), out,
                  format="nnef")
    for name in ("w.dat", "k.dat", "graph.nnef"):
        assert (out / name).read_bytes() == (folder / name).read_bytes(), name
    with pytest.raises(nnr.ConfigError, match="not an NNEF tensor file"):
        nnefa.read_tensor(b"\x00" * 200)
