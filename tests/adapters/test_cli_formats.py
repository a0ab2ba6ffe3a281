"""``nnr encode`` / ``nnr decode`` with model formats chosen by file name or --format."""
from __future__ import annotations

import io
import os

import numpy as np

import nnr
from nnr.cli.progress import Progress
from tests.adapters.conftest import need, package_file


def test_onnx_through_the_command_line(nnr_cli, tmp_path):
    need("onnx", "'nnr[frameworks]'")
    ort = need("onnxruntime", "'nnr[frameworks]'")
    src = package_file("rapidocr_onnxruntime", "models", "ch_ppocr_mobile_v2.0_cls_infer.onnx",
                       install="rapidocr-onnxruntime==1.4.4")
    stream, out = tmp_path / "cls.nnr", tmp_path / "cls.onnx"
    r = nnr_cli("encode", src, "-o", stream, "--blocks", "auto", "--qp", "-40")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""                      # no progress line when stderr is not a terminal
    assert "183 tensors" in r.stdout
    header = r.stdout.splitlines()[1].split()
    assert header == ["role", "tensors", "original", "bytes", "coded", "bytes", "ratio", "time"]
    assert "block" in nnr.inspect(stream.read_bytes()).tools
    r = nnr_cli("decode", stream, "-o", out)
    assert r.returncode == 0, r.stderr
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32)
    ref = ort.InferenceSession(str(src)).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"x": x})[0]
    assert np.max(np.abs(ref - got)) < 0.05
    r = nnr_cli("verify", stream, "--against", src, "--max-abs-error", "0.05")
    assert r.returncode == 0, r.stdout
    assert sorted(os.listdir(tmp_path)) == ["cls.nnr", "cls.onnx"]


def test_torch_lossless_and_format_flag(nnr_cli, tmp_path):
    torch = need("torch", "'nnr[frameworks]'")
    state = {"l.weight": torch.randn(8, 4, dtype=torch.bfloat16), "l.bias": torch.randn(8),
             "n.num_batches_tracked": torch.tensor(5)}
    src = tmp_path / "weights.bin"
    torch.save(state, src)
    r = nnr_cli("encode", src, "-o", tmp_path / "w.nnr", "--format", "torch", "--lossless")
    assert r.returncode == 0, r.stderr
    r = nnr_cli("decode", tmp_path / "w.nnr", "-o", tmp_path / "w.pt")
    assert r.returncode == 0, r.stderr
    back = torch.load(tmp_path / "w.pt", weights_only=True)
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in state.items())
    r = nnr_cli("decode", tmp_path / "w.nnr", "-o", tmp_path / "w.safetensors")
    assert r.returncode == 0, r.stderr


def test_graph_output_needs_a_graph_stream(nnr_cli, tmp_path):
    stream = tmp_path / "t.nnr"
    stream.write_bytes(nnr.encode({"w": np.ones((4, 4), np.float32)}))
    r = nnr_cli("decode", stream, "-o", tmp_path / "m.onnx")
    assert r.returncode == 1
    assert "no ONNX graph" in r.error_line() or "onnx" in r.error_line().lower()
    assert os.listdir(tmp_path) == ["t.nnr"]
    r = nnr_cli("decode", stream, stream, "-o", tmp_path / "m.pt")
    assert r.returncode == 1 and "sequence" in r.error_line()


def test_progress_line_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    out = Tty()
    with Progress(stream=out, interval=0.01).stage("encoding 3 tensors"):
        pass
    assert out.getvalue().startswith("\r\033[Knnr: encoding 3 tensors ... ")
    assert out.getvalue().endswith(" s\n")
    quiet = io.StringIO()
    with Progress(stream=quiet).stage("x"):
        pass
    assert quiet.getvalue() == ""
