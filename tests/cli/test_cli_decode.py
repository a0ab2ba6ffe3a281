"""``nnr decode``: .nnr/.nnc in, .npz out, exactly nnr.decode; sequences; failures leave nothing."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import nnr

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"
SEQUENCE = "p1_inc_tca1_hdsp0_rs0_scan1_dq0_minilm"  # 4 steps, no HDSP


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _assert_identical(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert got[key].tobytes() == value.tobytes(), key


@pytest.mark.parametrize("vector_id", ["p1_scan1_dq1_minilm", "p1_cb1_dq0_minilm",
                                       "p0_int_synth", "p1_blk_ls_bnf_synth"])
def test_decode_vector_like_nncodec(nnr_cli, tmp_path, vector_id):
    out = tmp_path / "out.npz"
    r = nnr_cli("decode", VECTORS / f"{vector_id}.nnc", "-o", out)
    assert r.returncode == 0, r.stderr
    _assert_identical(_load(out), _load(VECTORS / f"{vector_id}.decoded.npz"))
    assert sorted(os.listdir(tmp_path)) == ["out.npz"]


def test_nnr_suffix_and_stdin(nnr_cli, tmp_path):
    stream = tmp_path / "model.nnr"
    shutil.copyfile(VECTORS / "p1_scan0_dq1_minilm.nnc", stream)
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert nnr_cli("decode", stream, "-o", a).returncode == 0
    r = nnr_cli("decode", "-", "-o", b, stdin=stream.read_bytes())
    assert r.returncode == 0, r.stderr
    _assert_identical(_load(a), _load(b))
    _assert_identical(_load(a), dict(nnr.decode(stream.read_bytes())))


def test_decode_sequence(nnr_cli, tmp_path):
    streams = sorted(VECTORS.glob(f"{SEQUENCE}.[0-9].nnc"))
    assert len(streams) == 4
    out = tmp_path / "seq.npz"
    r = nnr_cli("decode", *streams, "-o", out)
    assert r.returncode == 0, r.stderr
    _assert_identical(_load(out), _load(VECTORS / f"{SEQUENCE}.decoded.npz"))


def test_encode_then_decode(nnr_cli, tmp_path):
    example = REPO / "examples" / "minilm_slice.npz"
    stream, out = tmp_path / "m.nnr", tmp_path / "m.npz"
    assert nnr_cli("encode", example, "-o", stream).returncode == 0
    r = nnr_cli("decode", stream, "-o", out)
    assert r.returncode == 0, r.stderr
    decoded = _load(out)
    _assert_identical(decoded, dict(nnr.decode(stream.read_bytes())))
    original = _load(example)
    assert sorted(decoded) == sorted(original)
    for name, value in original.items():
        assert decoded[name].shape == value.shape
        assert np.max(np.abs(decoded[name] - value)) < 0.05, name


# ------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_stream(nnr_cli, tmp_path, cut):
    data = (VECTORS / "p1_scan2_dq1_minilm.nnc").read_bytes()
    stream = tmp_path / "cut.nnr"
    stream.write_bytes(data[:int(len(data) * cut)])
    r = nnr_cli("decode", stream, "-o", tmp_path / "out.npz")
    assert r.returncode == 1
    assert "BitstreamError" in r.error_line()  # TruncatedBitstreamError, most likely
    assert sorted(os.listdir(tmp_path)) == ["cut.nnr"], "no output (or temp file) may remain"


def test_existing_output_survives_a_failed_decode(nnr_cli, tmp_path):
    out = tmp_path / "out.npz"
    out.write_bytes(b"previous result")
    stream = tmp_path / "cut.nnr"
    stream.write_bytes((VECTORS / "p1_scan0_dq0_minilm.nnc").read_bytes()[:1000])
    r = nnr_cli("decode", stream, "-o", out)
    assert r.returncode == 1
    r.error_line()
    assert out.read_bytes() == b"previous result"
    assert sorted(os.listdir(tmp_path)) == ["cut.nnr", "out.npz"]


@pytest.mark.parametrize("content", [b"", b"\x00", np.random.default_rng(0).bytes(64),
                                     b"PK\x03\x04 not nnr"],
                         ids=["empty", "one-byte", "random", "zip-magic"])
def test_garbage_is_one_line_error(nnr_cli, tmp_path, content):
    stream = tmp_path / "junk.nnr"
    stream.write_bytes(content)
    r = nnr_cli("decode", stream, "-o", tmp_path / "out.npz")
    assert r.returncode == 1
    assert "internal error" not in r.error_line()  # an NnrError, not a crash
    assert sorted(os.listdir(tmp_path)) == ["junk.nnr"]


def test_missing_input(nnr_cli, tmp_path):
    r = nnr_cli("decode", tmp_path / "absent.nnr", "-o", tmp_path / "out.npz")
    assert r.returncode == 1
    assert "absent.nnr" in r.error_line()
    assert os.listdir(tmp_path) == []


def test_output_must_be_npz(nnr_cli, tmp_path):
    r = nnr_cli("decode", VECTORS / "p0_int_synth.nnc", "-o", tmp_path / "out.nnr")
    assert r.returncode == 1
    assert ".npz" in r.error_line()
    assert os.listdir(tmp_path) == []
