"""nnr decodes every conformance vector of tests/vectors/ exactly as NNCodec did.

For each vector of manifest.json (60: NNCodec 2.1.3 profile 1, incl. 7 incremental sequences,
and NNCodec 0.3.1 profile 0):

* the stream files are the ones the manifest describes (sha256);
* ``nnr.decode`` (one ``nnr.DecoderState`` across the steps of a sequence) returns exactly the
  tensors of ``<id>.decoded.npz``: the same names (keys ``<step>/<name>`` for sequences; tensors
  without an NDU are absent), shapes, dtypes and bytes;
* the decoded tensors hash to the manifest's ``sha256_float32`` / ``sha256_raw_float64``;
* ``nnr.inspect`` reports the units of each stream and, per NDU, the fields of ``stream_ndus``
  and ``tensors`` (tensor names and shapes, payload type, qp, dq, scan order, codebook).

The ``vector`` argument and ``new_decoder_state`` come from tests/conformance/conftest.py.
"""
from __future__ import annotations

import hashlib
import inspect as pyinspect
import json
from pathlib import Path

import numpy as np

import nnr

VECTORS = Path(__file__).resolve().parents[1] / "vectors"

_decoded_cache: dict[str, dict[str, np.ndarray]] = {}


def _is_sequence(vector: dict) -> bool:
    return vector.get("incremental") is not None or len(vector["streams"]) > 1


def _key(vector: dict, step: int, name: str) -> str:
    return f"{step}/{name}" if _is_sequence(vector) else name


def _sha256_float32(array: np.ndarray) -> str:
    dtype = "<i4" if array.dtype.kind in "iu" else "<f4"
    return hashlib.sha256(np.ascontiguousarray(array, dtype=dtype).tobytes()).hexdigest()


def _sha256_raw_float64(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f8").tobytes()).hexdigest()


def decode_vector(vector: dict, new_decoder_state) -> dict[str, np.ndarray]:
    """All streams of the vector decoded by nnr, keyed like ``<id>.decoded.npz`` (cached)."""
    if vector["id"] in _decoded_cache:
        return _decoded_cache[vector["id"]]
    streams = [(VECTORS / name).read_bytes() for name in vector["streams"]]
    out: dict[str, np.ndarray] = {}
    if _is_sequence(vector):
        state = new_decoder_state(vector)
        for step, data in enumerate(streams):
            for name, value in nnr.decode(data, state=state).items():
                out[f"{step}/{name}"] = value
    else:
        out = dict(nnr.decode(streams[0]))
    _decoded_cache[vector["id"]] = out
    return out


def test_stream_files_match_manifest(vector):
    digests = [hashlib.sha256((VECTORS / s).read_bytes()).hexdigest() for s in vector["streams"]]
    assert digests == vector["stream_sha256"]
    assert sum((VECTORS / s).stat().st_size for s in vector["streams"]) == vector["stream_bytes"]


def test_decode_equals_nncodec_output(vector, new_decoder_state):
    ours = decode_vector(vector, new_decoder_state)
    with np.load(VECTORS / vector["decoded"], allow_pickle=False) as npz:
        theirs = {k: npz[k] for k in npz.files}
    assert sorted(ours) == sorted(theirs), "decoded tensor names differ from NNCodec's"
    for key, expected in theirs.items():
        got = np.asarray(ours[key])
        assert got.dtype == expected.dtype, f"{key}: dtype {got.dtype}, NNCodec {expected.dtype}"
        assert got.shape == expected.shape, f"{key}: shape {got.shape}, NNCodec {expected.shape}"
        assert np.array_equal(got, expected), f"{key}: values differ from NNCodec's"
        assert np.ascontiguousarray(got).tobytes() == expected.tobytes(), \
            f"{key}: bytes differ from NNCodec's (signed zeros?)"


def test_decode_matches_manifest_hashes(vector, new_decoder_state):
    ours = decode_vector(vector, new_decoder_state)
    expected_keys = set()
    for t in vector["tensors"]:
        key = _key(vector, t["step"], t["name"])
        expected_keys.add(key)
        assert key in ours, f"{key}: missing from nnr's output"
        got = np.asarray(ours[key])
        assert list(got.shape) == t["shape"], key
        assert str(got.dtype) == t["dtype"], key
        assert _sha256_float32(got) == t["sha256_float32"], f"{key}: sha256_float32"
        if "sha256_raw_float64" in t:
            assert _sha256_raw_float64(got) == t["sha256_raw_float64"], f"{key}: float64 bytes"
    for absent in vector.get("absent_tensors", []):
        key = _key(vector, absent["step"], absent["name"])
        assert key not in ours, f"{key} has no NDU in the stream but nnr returned it"
    assert set(ours) == expected_keys


# ------------------------------------------------------------------------------- inspect

def _name(value: object, prefix: str) -> str:
    """'NNR_PT_FLOAT', 'FLOAT', PayloadType.FLOAT ... -> 'FLOAT' (prefix 'NNR_PT_')."""
    text = getattr(value, "name", None) or str(value)
    text = text.rsplit(".", 1)[-1].upper()
    return text[len(prefix):] if text.startswith(prefix) else text


def _check_units(info, units: list) -> None:
    got = [(_name(u.unit_type, "NNR_"), u.size) for u in info.units]
    assert got == [(_name(t, "NNR_"), size) for t, size, _ in units]
    assert [u.index for u in info.units] == list(range(len(units)))
    offsets = np.cumsum([0] + [size for _, size, _ in units])[:-1].tolist()
    assert [u.offset for u in info.units] == offsets


def _ndu_groups(info) -> list[list]:
    groups: dict[int, list] = {}
    for t in info.tensors:
        groups.setdefault(t.ndu_index, []).append(t)
    return [groups[k] for k in sorted(groups)]


def _check_tensor(t, ndu: dict, expected: dict) -> None:
    where = f"{t.name}"
    assert tuple(t.shape) == tuple(expected["shape"]), where
    if len(ndu["topology_elem_ids"]) == 1 and ndu.get("tensor_dimensions") is not None:
        assert tuple(t.shape) == tuple(ndu["tensor_dimensions"]), where
    ptype = _name(t.payload_type, "NNR_PT_")
    if ndu["payload_type"] == "NNR_PT_BLOCK":
        assert ptype in {"BLOCK", "FLOAT"}, where
    else:
        assert ptype == _name(ndu["payload_type"], "NNR_PT_"), where
    assert bool(t.codebook) == (expected["coding"] == "codebook"), where
    if "qp" in expected:
        assert t.qp == expected["qp"], where
    if "dq_flag" in expected:
        assert bool(t.dq) == bool(expected["dq_flag"]), where
    if "scan_order" in expected:
        assert t.scan_order == expected["scan_order"], where
    assert isinstance(t.coded_bytes, (int, np.integer)) and t.coded_bytes >= 0, where


def _inspect_step(vector: dict, step: int, new_decoder_state):
    """``nnr.inspect`` of one stream; an update stream of a sequence gets the decoder state of
    the steps before it when ``nnr.inspect`` takes one (TCA payloads need the parent levels)."""
    data = (VECTORS / vector["streams"][step]).read_bytes()
    if step == 0 or "state" not in pyinspect.signature(nnr.inspect).parameters:
        return nnr.inspect(data)
    state = new_decoder_state(vector)
    for earlier in vector["streams"][:step]:
        nnr.decode((VECTORS / earlier).read_bytes(), state=state)
    return nnr.inspect(data, state=state)


def test_inspect_matches_manifest(vector, new_decoder_state):
    for step, name in enumerate(vector["streams"]):
        info = _inspect_step(vector, step, new_decoder_state)
        assert info.profile == vector["profile"]
        _check_units(info, vector["stream_units"][step])
        ndus = vector["stream_ndus"][step]
        groups = _ndu_groups(info)
        assert len(groups) == len(ndus), f"{name}: number of NDUs"
        tensors = {t["name"]: t for t in vector["tensors"] if t["step"] == step}
        for ndu, group in zip(ndus, groups):
            assert sorted(t.name for t in group) == sorted(ndu["topology_elem_ids"]), name
            for t in group:
                _check_tensor(t, ndu, tensors[t.name])
        assert all(isinstance(tool, str) for tool in info.tools)
        json.dumps(info.to_dict())
