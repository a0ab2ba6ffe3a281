"""Incremental (edition-2) coding: nnr's encoder against NNCodec's update chains and decoder.

* Re-encoding the sources of NNCodec's incremental vectors with the same settings gives the
  same bytes at every step where the encoder choices coincide (no row skipping, no codebook:
  there nnr flags only rows that are zero and picks codebooks differently, both smaller).
* Long chains (50 updates) over every combination of DQ, scan order, row skipping, TCA and
  HDSP stay in sync: each decoded update equals the encoder's own reconstruction.
* NNCodec 2.1.3 decodes nnr's chains (TCA, HDSP, row skip) to exactly nnr's decoder output.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

import nnr
from nnr.quantization import dequantize

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
EXACT = ["p1_inc_tca0_hdsp0_rs0_scan0_dq1_minilm", "p1_inc_tca1_hdsp0_rs0_scan1_dq0_minilm",
         "p1_inc_tca1_hdsp1_rs0_scan0_dq1_int_minilm"]


def _vector(vid: str) -> dict:
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    return next(v for v in manifest["vectors"] if v["id"] == vid)


def _step_options(ss: dict) -> dict:
    opts = dict(qp=ss["qp"], dq=ss["use_dq"], scan_order=ss["scan_order"],
                nonweight_qp=ss.get("nonweight_qp", -75),
                differences=bool(ss.get("compress_differences")),
                row_skip=bool(ss.get("row_skipping")))
    if opts["differences"]:
        opts["tca"] = bool(ss.get("tca"))
        opts["hdsp"] = ss.get("hdsp_tool") not in (None, False)
    return opts


@pytest.mark.parametrize("vid", EXACT)
def test_reencoding_nncodec_sequences_gives_the_same_bytes(vid):
    vector = _vector(vid)
    source = dict(np.load(VECTORS / vector["source"]))
    state = nnr.EncoderState()
    for step, stream in enumerate(vector["streams"]):
        tensors = {k.split("/", 1)[1]: a for k, a in source.items() if k.startswith(f"{step}/")}
        data = nnr.encode(tensors, state=state, init_estimate="nncodec",
                          **_step_options(vector["step_settings"][step]))
        assert data == (VECTORS / stream).read_bytes(), f"{vid} step {step}"


def _chain(seed: int, steps: int, rows: int = 24, cols: int = 20) -> list[dict[str, np.ndarray]]:
    """A base model and sparse updates (some rows and one tensor unchanged at times)."""
    rng = np.random.default_rng(seed)
    base = {"fc.weight": rng.standard_normal((rows, cols)).astype(np.float32) * 0.1,
            "conv.weight": rng.standard_normal((16, 4, 3, 3)).astype(np.float32) * 0.1,
            "fc.bias": rng.standard_normal(rows).astype(np.float32) * 0.01}
    out = [base]
    for s in range(steps):
        upd = {}
        for name, w in base.items():
            d = (rng.standard_normal(w.shape) * 0.004).astype(np.float32)
            d[rng.random(w.shape) < 0.5] = 0
            if w.ndim > 1:
                d[rng.random(w.shape[0]) < 0.3] = 0          # untouched rows
            if name == "conv.weight" and s % 7 == 3:
                d[...] = 0                                     # no update: no NDU
            upd[name] = d
        out.append(upd)
    return out


COMBOS = [dict(dq=dq, scan_order=scan, row_skip=rs, tca=tca, hdsp=hdsp)
          for dq, scan, rs, tca, hdsp in itertools.product(
              [True, False], [0, 2], [False, True], [False, True], [False, True])]


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join(f"{k}{int(v)}" for k, v in c.items()))
def test_long_update_chains_stay_in_sync(combo):
    chain = _chain(hash(tuple(combo.values())) % 1000, 50)
    enc, dec = nnr.EncoderState(), nnr.DecoderState()
    common = dict(dq=combo["dq"], scan_order=combo["scan_order"], row_skip=combo["row_skip"])
    for step, tensors in enumerate(chain):
        update = step > 0
        opts = dict(common, qp=-44 if update else -38, nonweight_qp=-60)
        if update:
            opts.update(differences=True, tca=combo["tca"], hdsp=combo["hdsp"])
        before = dict(enc.levels)
        data = nnr.encode(tensors, state=enc, **opts)
        out = nnr.decode(data, state=dec)
        for name in tensors:
            if name not in out:      # skipped: an all-zero update leaves the state alone
                assert update and np.array_equal(enc.levels[name], before[name])
                continue
            qp = opts["qp"] if tensors[name].ndim > 1 else opts["nonweight_qp"]
            expected = dequantize(enc.levels[name], qp, 2).reshape(tensors[name].shape)
            np.testing.assert_array_equal(out[name], expected, err_msg=f"step {step} {name}")
            np.testing.assert_array_equal(dec.levels[name], enc.levels[name])
    assert any(h.any() for h in dec.hdsp_history.values())


def test_update_with_a_new_tensor_and_a_changed_shape():
    """Transfer learning: a new head (new name) and a replaced layer (new shape) in an update."""
    rng = np.random.default_rng(3)
    base = {"body.weight": rng.standard_normal((8, 8)).astype(np.float32),
            "head.weight": rng.standard_normal((4, 8)).astype(np.float32)}
    enc, dec = nnr.EncoderState(), nnr.DecoderState()
    nnr.decode(nnr.encode(base, state=enc), state=dec)
    upd = {"body.weight": np.full((8, 8), 0.01, np.float32),
           "head.weight": rng.standard_normal((6, 8)).astype(np.float32),
           "new.weight": rng.standard_normal((3, 8)).astype(np.float32)}
    data = nnr.encode(upd, state=enc, differences=True, tca=True, hdsp=True)
    out = nnr.decode(data, state=dec)
    assert out["head.weight"].shape == (6, 8) and out["new.weight"].shape == (3, 8)
    for name in upd:
        np.testing.assert_array_equal(dec.levels[name], enc.levels[name])


def test_nncodec_decodes_nnr_update_chains(nncodec, tmp_path):
    jobs, expected = [], {}
    for i, combo in enumerate(c for c in COMBOS if not (c["dq"] and c["scan_order"]
                                                      and c["row_skip"])):
        chain = _chain(100 + i, 6)
        enc, dec = nnr.EncoderState(), nnr.DecoderState()
        paths, mine = [], {}
        for step, tensors in enumerate(chain):
            opts = dict(dq=combo["dq"], scan_order=combo["scan_order"], row_skip=combo["row_skip"],
                        qp=-44 if step else -38)
            if step:
                opts.update(differences=True, tca=combo["tca"], hdsp=combo["hdsp"])
            data = nnr.encode(tensors, state=enc, **opts)
            path = tmp_path / f"c{i}.{step}.nnc"
            path.write_bytes(data)
            paths.append(str(path))
            for name, arr in nnr.decode(data, state=dec).items():
                mine[f"{step}/{name}"] = arr
        out = tmp_path / f"c{i}.npz"
        jobs.append({"streams": paths, "out": str(out), "sequence": True,
                     "hdsp": combo["hdsp"], "index": i})
        expected[i] = (out, mine, combo)
    results = nncodec.decode(jobs, tmp_path)
    for i, (out, mine, combo) in expected.items():
        status = results.get(str(i)) or results.get(i)
        assert status and status.get("status") == "ok", (combo, status)
        theirs = dict(np.load(out))
        assert set(theirs) == set(mine), combo
        for key in mine:
            assert theirs[key].tobytes() == mine[key].tobytes(), (combo, key)


def test_sha256_parent_ids_let_updates_branch():
    """Asynchronous updates: B is coded against the base although A came in between; the
    decoder finds B's parent by the SHA-256 of the base's payload."""
    chain = _chain(7, 3)
    enc, dec = nnr.EncoderState(), nnr.DecoderState()
    opts = dict(differences=True, tca=True, hdsp=False, parent_id="sha256", qp=-44)
    base = nnr.encode(chain[0], state=enc)
    root = enc.heads()
    a = nnr.encode(chain[1], state=enc, **opts)
    assert enc.node_of("fc.weight") != root["fc.weight"]
    b = nnr.encode(chain[2], state=enc, parent=root, **opts)
    for data in (base, a, b):
        out = nnr.decode(data, state=dec)
    for name in out:
        np.testing.assert_array_equal(dec.levels[name], enc.levels[name])
    info_b = nnr.inspect(b, state=_state_after(base, a))
    assert "temporal_context_adaptation" in info_b.tools
    # a decoder that never saw the parent refuses the update instead of guessing
    with pytest.raises(nnr.NonConformingBitstreamError, match="not seen"):
        nnr.decode(b, state=nnr.DecoderState())


def _state_after(*streams):
    st = nnr.DecoderState()
    for s in streams:
        nnr.decode(s, state=st)
    return st


def test_nncodec_decodes_chains_with_sha256_parent_ids(nncodec, tmp_path):
    chain = _chain(9, 4)
    enc, dec = nnr.EncoderState(), nnr.DecoderState()
    paths, mine = [], {}
    for step, tensors in enumerate(chain):
        opts = dict(qp=-44 if step else -38)
        if step:
            opts.update(differences=True, tca=True, parent_id="sha256")
        data = nnr.encode(tensors, state=enc, **opts)
        (tmp_path / f"s{step}.nnc").write_bytes(data)
        paths.append(str(tmp_path / f"s{step}.nnc"))
        for name, arr in nnr.decode(data, state=dec).items():
            mine[f"{step}/{name}"] = arr
    results = nncodec.decode([{"streams": paths, "out": str(tmp_path / "o.npz"),
                               "sequence": True, "hdsp": False, "index": 0}], tmp_path)
    assert (results.get(0) or results.get("0"))["status"] == "ok", results
    theirs = dict(np.load(tmp_path / "o.npz"))
    assert set(theirs) == set(mine)
    for key in mine:
        assert theirs[key].tobytes() == mine[key].tobytes(), key
