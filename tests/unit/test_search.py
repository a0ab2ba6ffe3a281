"""Target-driven search: metric tolerance kept, byte budget kept, per-tensor qps pay off."""
from __future__ import annotations

import numpy as np
import pytest

import nnr
from nnr.errors import ConfigError


def _net(seed=0):
    """A small two-layer network with a fixed input batch; the metric is the agreement of
    its class decisions with the uncompressed network's."""
    rng = np.random.default_rng(seed)
    w = {"l1.weight": rng.standard_normal((96, 64)).astype(np.float32) * 0.15,
         "l1.bias": rng.standard_normal(96).astype(np.float32) * 0.05,
         "l2.weight": rng.standard_normal((10, 96)).astype(np.float32) * 0.3,
         "l2.bias": np.zeros(10, np.float32)}
    x = rng.standard_normal((400, 64)).astype(np.float32)

    def logits(t):
        h = np.maximum(x @ t["l1.weight"].T + t["l1.bias"], 0)
        return h @ t["l2.weight"].T + t["l2.bias"]

    ref = logits(w).argmax(1)
    return w, (lambda t: float(np.mean(logits(t).argmax(1) == ref)))


def test_metric_target_keeps_the_metric_and_beats_the_best_global_qp():
    w, evaluate = _net()
    res = nnr.encode_for_metric(w, evaluate, max_drop=0.01, max_evaluations=50)
    assert res.baseline_metric == 1.0
    assert evaluate(nnr.decode(res.data)) >= 0.99          # checked on the decoded stream
    assert res.metric == evaluate(nnr.decode(res.data))
    globals_ok = [e for e in res.log if e["step"].startswith("global qp") and e["ok"]]
    best_global = min(e["bytes"] for e in globals_ok)
    assert len(res.data) <= best_global
    assert res.evaluations <= 51                          # the budget and the original
    assert nnr.encode(w, target=nnr.MetricTarget(evaluate, max_drop=0.01,
                                                 max_evaluations=50)) == res.data


def test_size_target_fits_and_is_the_finest_that_fits():
    w, _ = _net(1)
    budget = 6000
    res = nnr.encode_for_size(w, budget)
    assert len(res.data) <= budget
    finer = nnr.encode(w, qp_per_tensor={k: v - 1 for k, v in res.qp_per_tensor.items()
                                         if w[k].ndim > 1})
    assert len(finer) > budget
    with pytest.raises(ConfigError, match="coarsest"):
        nnr.encode_for_size(w, 50)


def _sensitive_net(seed=2):
    """Two layers of the same size whose error matters very differently: the first is
    followed by a 1/20 output scale, the second is not."""
    rng = np.random.default_rng(seed)
    w = {"a.weight": rng.standard_normal((64, 64)).astype(np.float32) * 0.2,
         "b.weight": rng.standard_normal((64, 64)).astype(np.float32) * 0.2}
    x = rng.standard_normal((300, 64)).astype(np.float32)

    def out(t):
        return 0.05 * np.tanh(x @ t["a.weight"].T) + np.tanh(x @ t["b.weight"].T)

    ref = out(w)

    def judge(t):
        err = float(np.mean((out(t) - ref) ** 2))
        return err <= 2e-4, err
    return w, judge


def test_acceptance_search_spends_bits_where_they_matter():
    w, judge = _sensitive_net()
    calls = []

    def counting(t):
        calls.append(1)
        return judge(t)
    res = nnr.encode_for_acceptance(w, counting, max_evaluations=40)
    assert res.evaluations == len(calls) <= 40
    ok, _ = judge(nnr.decode(res.data))
    assert ok                                               # checked on the decoded stream
    # the insensitive layer is coded much more coarsely than the sensitive one
    assert res.qp_per_tensor["a.weight"] >= res.qp_per_tensor["b.weight"] + 8
    globals_ok = [e["bytes"] for e in res.log if e["step"].startswith("global qp") and e["ok"]]
    assert len(res.data) < 0.85 * min(globals_ok)           # clearly below the best global qp
    # every logged step is a real evaluation, and the search is deterministic
    assert len(res.log) == res.evaluations
    assert nnr.encode_for_acceptance(w, judge, max_evaluations=40).data == res.data


def test_search_chooses_the_quantizer_per_tensor_by_rd_cost():
    """Besides each qp with DQ, a weight may be coded without DQ (as a codebook where smaller)
    one octave coarser; the allocation picks by the same rate + lambda * distortion cost."""
    w, judge = _sensitive_net()
    res = nnr.encode_for_acceptance(w, judge, max_evaluations=40)
    # the insensitive layer goes very coarse, where uniform levels without DQ cost less
    assert res.dq_per_tensor == {"a.weight": False}
    assert res.codebook_per_tensor == {"a.weight": "auto"}
    assert nnr.encode(w, **res.options) == res.data          # the options reproduce the stream
    coded = {t.name: t for t in nnr.inspect(res.data).tensors}
    assert coded["a.weight"].dq is False and coded["b.weight"].dq is True
    assert judge(nnr.decode(res.data))[0]


def test_per_tensor_dq_and_codebook_options():
    rng = np.random.default_rng(4)
    t = {"a": rng.standard_normal((32, 48)).astype(np.float32) * 0.1,
         "b": rng.standard_normal((16, 16)).astype(np.float32) * 0.1}
    data = nnr.encode(t, dq_per_tensor={"a": False}, codebook_per_tensor={"b": "on"})
    coded = {x.name: x for x in nnr.inspect(data).tensors}
    assert coded["a"].dq is False and coded["a"].codebook is False
    assert coded["b"].codebook is True
    assert nnr.encode(t) != data
    with pytest.raises(ConfigError, match="dq for tensor"):
        nnr.encode(t, dq_per_tensor={"a": "no"})
    with pytest.raises(ConfigError, match="codebook for tensor"):
        nnr.encode(t, codebook_per_tensor={"a": "sometimes"})
    with pytest.raises(ConfigError, match="dq_per_tensor"):
        nnr.encode(t, dq_per_tensor={"a": False}, bit_depth=8)


def test_metric_search_with_a_distortion_function():
    w, evaluate = _net(3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 64)).astype(np.float32)

    def logits(t):
        return np.maximum(x @ t["l1.weight"].T + t["l1.bias"], 0) @ t["l2.weight"].T

    ref = logits(w)
    res = nnr.encode_for_metric(w, evaluate, max_drop=0.02,
                                distortion=lambda t: float(np.mean((logits(t) - ref) ** 2)))
    assert evaluate(nnr.decode(res.data)) >= 0.98
    assert any(e["step"].startswith("probe") for e in res.log)
    assert any(e["step"].startswith("allocation") for e in res.log)


def test_search_rejects_a_target_that_even_the_finest_qp_misses():
    w, _ = _net()
    with pytest.raises(ConfigError, match="finer qp_bounds"):
        nnr.encode_for_acceptance(w, lambda t: (False, 1.0))
