"""nnr.incremental: update chains over the public API (closed loop, error feedback,
prediction, full / partial / transfer-learning updates, byte accounting, persistence)."""
from __future__ import annotations

import numpy as np
import pytest

import nnr
from nnr.errors import ConfigError
from nnr.incremental import UpdateDecoder, UpdateEncoder, UpdateStats

QP = -32
STEP = 2.0 ** (QP / 4)          # quantization step at qp_density 2


def _bound(qp: int) -> float:
    """Largest reconstruction error of DQ at ``qp`` (two interleaved quantizers)."""
    return 2 * 2.0 ** (qp / 4)


def _base(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"conv.weight": (rng.standard_normal((8, 4, 3, 3)) * 0.1).astype(np.float32),
            "fc.weight": (rng.standard_normal((16, 32)) * 0.1).astype(np.float32),
            "fc.bias": np.zeros(16, np.float32)}


def _drift(model: dict, rng, scale: float = 0.003) -> dict:
    return {k: (v + rng.standard_normal(v.shape) * scale).astype(np.float32)
            for k, v in model.items()}


def _in_sync(enc: UpdateEncoder, dec: UpdateDecoder) -> None:
    assert enc.reference.keys() == dec.reference.keys()
    for name in enc.reference:
        assert enc.reference[name].dtype == dec.reference[name].dtype
        np.testing.assert_array_equal(enc.reference[name], dec.reference[name], err_msg=name)


def test_closed_loop_stays_in_sync_and_errors_do_not_accumulate():
    rng = np.random.default_rng(1)
    model = _base()
    enc, dec = UpdateEncoder(model, qp=QP, nonweight_qp=QP), UpdateDecoder(model)
    worst = []
    for _ in range(40):
        model = _drift(model, rng)
        received = dec.decode(enc.encode(model))
        _in_sync(enc, dec)
        worst.append(max(float(np.abs(received[k] - model[k]).max()) for k in model))
    # DQ reconstructs within about one step; after 40 updates the error is no larger than
    # after the first ones (an open loop would add up 40 quantization errors)
    assert max(worst) < _bound(QP)
    assert np.mean(worst[-10:]) < 1.3 * np.mean(worst[:10])


def test_open_loop_would_drift_where_the_closed_loop_does_not():
    rng = np.random.default_rng(2)
    model = prev = _base()
    dec_open = UpdateDecoder(model)
    enc = UpdateEncoder(model, qp=QP, nonweight_qp=QP)
    dec = UpdateDecoder(model)
    open_enc = UpdateEncoder(model, qp=QP, nonweight_qp=QP)
    for _ in range(40):
        model = _drift(model, rng)
        dec.decode(enc.encode(model))
        # "open loop": each difference to the previous *true* model, coded on its own
        dec_open.decode(open_enc.encode_delta({k: model[k] - prev[k] for k in model}))
        prev = model
    closed = max(float(np.abs(dec.reference[k] - model[k]).max()) for k in model)
    opened = max(float(np.abs(dec_open.reference[k] - model[k]).max()) for k in model)
    assert closed < _bound(QP) < opened


def test_first_stream_without_base_is_a_full_model_then_updates():
    model = _base()
    enc, dec = UpdateEncoder(qp=QP, full_qp=-44), UpdateDecoder()
    first = enc.encode(model)
    assert "parent_node_id" not in nnr.inspect(first).tools
    received = dec.decode(first)
    assert max(float(np.abs(received[k] - model[k]).max()) for k in model) <= _bound(-44)
    update = enc.encode(_drift(model, np.random.default_rng(3)))
    info = nnr.inspect(update, state=dec._state)
    assert {"parent_node_id", "temporal_context_adaptation"} <= info.tools
    dec.decode(update)
    _in_sync(enc, dec)


def test_update_streams_are_plain_nnr_sequences():
    """A bare nnr.DecoderState reads the chain too: it returns the coded differences."""
    rng = np.random.default_rng(4)
    model = _base()
    enc = UpdateEncoder(qp=QP)
    state = nnr.DecoderState()
    raw = nnr.decode(enc.encode(model), state=state)
    total = {k: v.copy() for k, v in raw.items()}
    for _ in range(5):
        model = _drift(model, rng)
        for name, diff in nnr.decode(enc.encode(model), state=state).items():
            total[name] = total[name] + diff
    for name in model:
        np.testing.assert_array_equal(total[name], enc.reference[name])


def test_full_model_update_mid_chain():
    rng = np.random.default_rng(5)
    model = _base()
    enc, dec = UpdateEncoder(model, qp=QP), UpdateDecoder(model)
    dec.decode(enc.encode(_drift(model, rng)))
    fresh = _base(seed=9)
    stream = enc.encode_full(fresh)
    assert "parent_node_id" not in nnr.inspect(stream).tools
    changes = dec.decode_delta(stream)
    assert set(changes) == set(fresh)
    _in_sync(enc, dec)
    assert max(float(np.abs(dec.reference[k] - fresh[k]).max()) for k in fresh) < _bound(-38)
    dec.decode(enc.encode(_drift(fresh, rng)))
    _in_sync(enc, dec)


def test_partial_update_and_unchanged_tensors_have_no_ndu():
    model = _base()
    enc, dec = UpdateEncoder(model, qp=QP, nonweight_qp=QP), UpdateDecoder(model)
    changed = {"fc.weight": model["fc.weight"] + 0.05,
               "fc.bias": model["fc.bias"] + STEP / 100}     # quantizes to zero
    stream = enc.encode(changed)
    assert [t.name for t in nnr.inspect(stream, state=dec._state).tensors] == ["fc.weight"]
    received = dec.decode(stream)
    _in_sync(enc, dec)
    np.testing.assert_array_equal(received["conv.weight"], model["conv.weight"])
    np.testing.assert_array_equal(received["fc.bias"], model["fc.bias"])
    assert np.abs(received["fc.weight"] - changed["fc.weight"]).max() < _bound(QP)


def _with_new_head(model: dict, rng) -> dict:
    """Transfer learning: a reshaped classifier head and a new adapter."""
    new = dict(model)
    new["fc.weight"] = (rng.standard_normal((10, 32)) * 0.1).astype(np.float32)   # new head
    new["fc.bias"] = np.zeros(10, np.float32)
    new["adapter.weight"] = (rng.standard_normal((4, 32)) * 0.1).astype(np.float32)
    return new


def _send_new_head(enc: UpdateEncoder, dec: UpdateDecoder, new: dict) -> None:
    changes = dec.decode_delta(enc.encode(new))
    _in_sync(enc, dec)
    assert dec.reference["fc.weight"].shape == (10, 32)
    assert {"fc.weight", "adapter.weight"} <= set(changes)


def test_transfer_learning_new_and_reshaped_tensors():
    rng = np.random.default_rng(6)
    model = _base()
    enc, dec = UpdateEncoder(model, qp=-20, full_qp=-44), UpdateDecoder(model)
    new = _with_new_head(model, rng)
    _send_new_head(enc, dec, new)
    # sent whole at full_qp (much finer than the update qp -20)
    for name in ("fc.weight", "adapter.weight"):
        assert np.abs(dec.reference[name] - new[name]).max() <= _bound(-44)
    dec.decode(enc.encode(_drift(new, rng)))
    _in_sync(enc, dec)


@pytest.mark.parametrize("options", [{"bit_depth": 6}, {"stochastic": "ternary", "seed": 3}])
def test_low_bit_update_chains_take_new_and_reshaped_tensors(options):
    """Quantizers that choose each tensor's step themselves code new tensors the same way."""
    rng = np.random.default_rng(8)
    model = _base()
    enc, dec = UpdateEncoder(model, **options), UpdateDecoder(model)
    new = _with_new_head(_drift(model, rng), rng)
    _send_new_head(enc, dec, new)
    step = np.abs(dec.reference["adapter.weight"] - new["adapter.weight"]).max()
    assert 0 < step < np.abs(new["adapter.weight"]).max()       # coded, and not as zero
    dec.decode(enc.encode(_drift(new, rng)))
    _in_sync(enc, dec)


def test_error_feedback_delivers_what_quantization_would_lose():
    """A delta below the dead zone never arrives without error feedback; with it the sum
    of what arrived tracks the sum sent."""
    base = {"w": np.zeros((8, 8), np.float32)}
    small = {"w": np.full((8, 8), STEP / 5, np.float32)}
    for feedback in (False, True):
        enc = UpdateEncoder(base, qp=QP, error_feedback=feedback)
        dec = UpdateDecoder(base)
        for _ in range(20):
            dec.decode_delta(enc.encode_delta(small))
        _in_sync(enc, dec)
        sent = 20 * STEP / 5
        got = float(dec.reference["w"].mean())
        if feedback:
            assert abs(got - sent) < STEP
        else:
            assert got == 0.0


def test_rebase_with_error_feedback():
    """A client's updates against a global model that moves every round."""
    rng = np.random.default_rng(7)
    glob = _base()
    enc, dec = UpdateEncoder(qp=QP, error_feedback=True), UpdateDecoder()
    true_sum = {k: np.zeros_like(v) for k, v in glob.items()}
    got_sum = {k: np.zeros_like(v) for k, v in glob.items()}
    for _ in range(15):
        glob = _drift(glob, rng, 0.01)                 # the new global model
        enc.rebase(glob)
        dec.rebase(glob)
        local = {k: v + np.float32(STEP / 3) for k, v in glob.items()}
        delta = dec.decode_delta(enc.encode(local))
        _in_sync(enc, dec)
        for k in glob:
            true_sum[k] += local[k] - glob[k]
            got_sum[k] += delta.get(k, 0)
    for k in glob:      # each update alone is below the dead zone; their sum arrives
        assert np.abs(got_sum[k] - true_sum[k]).max() < _bound(QP)
        assert np.abs(got_sum[k]).mean() > 0.5 * np.abs(true_sum[k]).mean()


def test_predictive_coding_in_sync_and_smaller_for_correlated_updates():
    rng = np.random.default_rng(8)
    base = _base()
    direction = {k: (rng.standard_normal(v.shape) * 0.01).astype(np.float32)
                 for k, v in base.items()}
    sizes = {}
    for predictive in (0.0, 1.0):
        enc = UpdateEncoder(base, qp=QP, predictive=predictive)
        dec = UpdateDecoder(base, predictive=predictive)
        total = 0
        for step in range(8):
            delta = {k: d * np.float32(1 + 0.02 * step) for k, d in direction.items()}
            stream = enc.encode_delta(delta)
            dec.decode_delta(stream)
            _in_sync(enc, dec)
            total += len(stream) if step else 0
        sizes[predictive] = total
        assert enc.stats.bytes == dec.stats.bytes
    assert sizes[1.0] < 0.75 * sizes[0.0]


def test_integer_tensors_are_lossless_and_scalars_keep_working():
    base = {"w": np.ones((4, 4), np.float32), "steps": np.array(3, np.int64),
            "ids": np.arange(6, dtype=np.int64)}
    enc, dec = UpdateEncoder(base, qp=QP), UpdateDecoder(base)
    for i in range(4):
        model = {"w": base["w"] + i * 0.1, "steps": np.array(3 + 7 * i), "ids": base["ids"] * i}
        received = dec.decode(enc.encode(model))
        _in_sync(enc, dec)
        assert received["steps"].tolist() == [3 + 7 * i] and received["steps"].dtype == np.int64
        np.testing.assert_array_equal(received["ids"], base["ids"] * i)


def test_byte_accounting():
    rng = np.random.default_rng(10)
    model = _base()
    enc, dec = UpdateEncoder(qp=QP), UpdateDecoder()
    lengths = []
    for _ in range(4):
        stream = enc.encode(model)
        dec.decode(stream)
        lengths.append(len(stream))
        model = _drift(model, rng)
    n = sum(v.size for v in model.values())
    assert enc.stats == UpdateStats(4, sum(lengths), 4 * 4 * n, lengths)
    assert dec.stats.bytes == sum(lengths) and dec.stats.sizes == lengths
    assert enc.stats.last == lengths[-1] and 0 < enc.stats.ratio < 1


def test_saved_state_continues_the_chain_identically():
    rng = np.random.default_rng(11)
    model = _base()
    enc = UpdateEncoder(model, qp=QP, error_feedback=True, predictive=0.5, hdsp=True)
    dec = UpdateDecoder(model, predictive=0.5)
    for _ in range(3):
        model = _drift(model, rng)
        dec.decode(enc.encode_delta({k: v * 0.1 for k, v in model.items()}))
    enc2, dec2 = UpdateEncoder.from_bytes(enc.to_bytes()), UpdateDecoder.from_bytes(dec.to_bytes())
    assert enc2.stats == enc.stats
    for _ in range(3):
        model = _drift(model, rng)
        delta = {k: v * 0.1 for k, v in model.items()}
        stream = enc.encode_delta(delta)
        assert enc2.encode_delta(delta) == stream
        dec.decode(stream)
        dec2.decode(stream)
    _in_sync(enc2, dec2)
    _in_sync(enc, dec2)


def test_bad_saved_state_and_bad_options():
    with pytest.raises(ConfigError, match="not a saved nnr update encoder"):
        UpdateEncoder.from_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a saved nnr update encoder"):
        UpdateEncoder.from_bytes(UpdateDecoder().to_bytes())
    with pytest.raises(ConfigError, match="differences is implied"):
        UpdateEncoder(differences=True)
    with pytest.raises(ConfigError, match="profile 1"):
        UpdateEncoder(profile=0, tca=False, hdsp=False)
    with pytest.raises(ConfigError, match="predictive"):
        UpdateDecoder(predictive=1.5)
    with pytest.raises(ConfigError, match="unknown encoder option"):
        UpdateEncoder(quality=3)
    with pytest.raises(ConfigError):
        UpdateEncoder(qp=QP).encode({"s": np.array(["a"])})


def test_edition2_tools_can_be_turned_off():
    rng = np.random.default_rng(12)
    model = _base()
    enc, dec = UpdateEncoder(model, qp=QP, tca=False, hdsp=False), UpdateDecoder(model)
    for _ in range(3):
        model = _drift(model, rng)
        stream = enc.encode(model)
        tools = nnr.inspect(stream, state=dec._state).tools
        assert "parent_node_id" in tools and "temporal_context_adaptation" not in tools
        dec.decode(stream)
    _in_sync(enc, dec)


def test_the_example_in_docs_federated_md_prints_what_it_shows(capsys):
    import re
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "federated.md").read_text()
    code, shown = re.search(r"```python\n(.*?)```\n\n```text\n(.*?)```", doc, re.S).groups()
    exec(compile(code, "docs/federated.md", "exec"), {})
    assert capsys.readouterr().out == shown


def test_a_stream_that_fails_to_decode_changes_nothing():
    rng = np.random.default_rng(13)
    model = _base()
    enc, dec = UpdateEncoder(model, qp=QP), UpdateDecoder(model)
    dec.decode(enc.encode(_drift(model, rng)))
    good = enc.encode(_drift(model, rng))
    with pytest.raises(nnr.NnrError):
        dec.decode(good[:-7])
    with pytest.raises(nnr.NnrError):
        dec.decode(good[:40] + bytes(b ^ 0x5A for b in good[40:80]) + good[80:])
    assert dec.stats.streams == 1
    dec.decode(good)
    _in_sync(enc, dec)


def test_the_reference_cannot_be_changed_behind_the_chain_s_back():
    model = _base()
    enc, dec = UpdateEncoder(model, qp=QP), UpdateDecoder(model)
    model["fc.weight"] += 1.0                         # the caller's array, changed in place
    assert not np.array_equal(enc.reference["fc.weight"], model["fc.weight"])
    received = dec.decode(enc.encode(_drift(_base(), np.random.default_rng(14))))
    with pytest.raises(ValueError):
        received["fc.weight"][0, 0] = 5.0             # read-only: copy before changing
    _in_sync(enc, dec)
