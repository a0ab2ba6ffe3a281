"""CLI: target-driven encoding, RD quantization, streaming and random access."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

import nnr


def _nnr(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nnr.cli.main", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def _model(path):
    rng = np.random.default_rng(2)
    m = {"l1.weight": rng.standard_normal((64, 32)).astype(np.float32) * 0.2,
         "l1.bias": rng.standard_normal(64).astype(np.float32) * 0.05,
         "l2.weight": rng.standard_normal((10, 64)).astype(np.float32) * 0.3}
    np.savez(path, **m)
    return m


EVAL = """
import numpy as np
X = np.random.default_rng(0).standard_normal((300, 32)).astype(np.float32)
def _out(t):
    return (np.maximum(X @ t["l1.weight"].T + t["l1.bias"], 0) @ t["l2.weight"].T).argmax(1)
REF = None
def evaluate(t):
    global REF
    if REF is None:
        REF = _out(t)
    return float(np.mean(_out(t) == REF))
"""


def test_max_drop_with_eval_script(tmp_path):
    _model(tmp_path / "m.npz")
    (tmp_path / "ev.py").write_text(EVAL)
    r = _nnr("encode", tmp_path / "m.npz", "-o", tmp_path / "m.nnr", "--max-drop", "2%",
             "--eval", tmp_path / "ev.py")
    assert r.returncode == 0, r.stderr
    assert "search: metric" in r.stderr
    plain = _nnr("encode", tmp_path / "m.npz", "-o", tmp_path / "p.nnr")
    assert plain.returncode == 0
    assert (tmp_path / "m.nnr").stat().st_size < (tmp_path / "p.nnr").stat().st_size
    r = _nnr("encode", tmp_path / "m.npz", "-o", tmp_path / "x.nnr", "--max-drop", "1%")
    assert r.returncode == 1 and "needs --eval" in r.stderr and not (tmp_path / "x.nnr").exists()


def test_max_drop_with_a_distortion_function_and_a_budget(tmp_path):
    _model(tmp_path / "m.npz")
    calls = tmp_path / "calls.txt"
    (tmp_path / "ev.py").write_text(EVAL + f"""
REF_LOGITS = None
def distortion(t):
    global REF_LOGITS
    with open({str(calls)!r}, "a") as f:
        f.write("d\\n")
    out = np.maximum(X @ t["l1.weight"].T + t["l1.bias"], 0) @ t["l2.weight"].T
    if REF_LOGITS is None:
        REF_LOGITS = out
    return float(np.mean((out - REF_LOGITS) ** 2))
""")
    r = _nnr("encode", tmp_path / "m.npz", "-o", tmp_path / "m.nnr", "--max-drop", "2%",
             "--eval", tmp_path / "ev.py", "--max-evaluations", "25")
    assert r.returncode == 0, r.stderr
    n = int(r.stderr.split(" evaluations")[0].rsplit(" ", 1)[-1])
    assert n <= 26                                        # the budget, plus the original
    assert calls.read_text().count("d") == n - 1          # distortion judged every candidate
    r = _nnr("encode", tmp_path / "m.npz", "-o", tmp_path / "z.nnr", "--max-drop", "2%",
             "--eval", tmp_path / "ev.py", "--max-evaluations", "0")
    assert r.returncode == 1 and "--max-evaluations" in r.stderr
    assert not (tmp_path / "z.nnr").exists()


def test_size_and_lambda_scale(tmp_path):
    _model(tmp_path / "m.npz")
    r = _nnr("encode", tmp_path / "m.npz", "-o", tmp_path / "s.nnr", "--size", "3000")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.nnr").stat().st_size <= 3000
    r = _nnr("encode", tmp_path / "m.npz", "-o", tmp_path / "rd.nnr", "--lambda-scale", "2")
    assert r.returncode == 0, r.stderr


def test_stream_encode_and_tensor_decode(tmp_path):
    m = _model(tmp_path / "m.npz")
    r = _nnr("encode", tmp_path / "m.npz", "-o", tmp_path / "m.nnr", "--stream")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.nnr").read_bytes() == nnr.encode(m)
    r = _nnr("decode", tmp_path / "m.nnr", "-o", tmp_path / "one.npz", "--tensor", "l2.weight")
    assert r.returncode == 0, r.stderr
    assert list(np.load(tmp_path / "one.npz")) == ["l2.weight"]
    r = _nnr("decode", tmp_path / "m.nnr", "-o", tmp_path / "all.safetensors", "--stream")
    assert r.returncode == 0, r.stderr
    r = _nnr("decode", tmp_path / "m.nnr", "-o", tmp_path / "no.npz", "--tensor", "nope")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and not (tmp_path / "no.npz").exists()
