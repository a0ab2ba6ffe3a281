"""``nnr verify``: against the vectors' manifest (by sha256) or against the original tensors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import nnr
from nnr.cli.verify import sha256_float32, sha256_raw_float64

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"
MANIFEST = VECTORS / "manifest.json"
EXAMPLE = REPO / "examples" / "minilm_slice.npz"


def _vector(vector_id: str) -> dict:
    return next(v for v in json.loads(MANIFEST.read_text())["vectors"] if v["id"] == vector_id)


def test_hashes_are_the_manifests():
    """The CLI's hash functions reproduce the manifest from NNCodec's decoded files."""
    for vector_id in ("p1_cb1_dq0_minilm", "p0_int_synth", "p1_scan0_dq1_minilm"):
        v = _vector(vector_id)
        with np.load(VECTORS / v["decoded"]) as npz:
            for t in v["tensors"]:
                assert sha256_float32(npz[t["name"]]) == t["sha256_float32"]
                if "sha256_raw_float64" in t:
                    assert sha256_raw_float64(npz[t["name"]]) == t["sha256_raw_float64"]


@pytest.mark.parametrize("vector_id", ["p1_scan0_dq1_minilm", "p1_cb1_dq0_minilm",
                                       "p0_int_synth", "p1_blk_ls_bnf_synth",
                                       "p1_pre_signalling_skip_synth"])
def test_manifest_by_sha256(nnr_cli, vector_id):
    r = nnr_cli("verify", VECTORS / f"{vector_id}.nnc", "--manifest", MANIFEST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"vector {vector_id}: stream sha256 matches" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1].startswith("OK: all ")


def test_manifest_by_id(nnr_cli):
    r = nnr_cli("verify", VECTORS / "p1_scan2_dq0_minilm.nnc", "--manifest", MANIFEST,
                "--id", "p1_scan2_dq0_minilm")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("vector_id, step", [("p1_inc_tca1_hdsp0_rs0_scan1_dq0_minilm", 2),
                                             ("p1_inc_tca1_hdsp1_rs1_scan2_dq0_minilm", 3)])
def test_manifest_sequence_step(nnr_cli, vector_id, step):
    """A step of a sequence is decoded after the earlier steps (found beside the manifest)."""
    r = nnr_cli("verify", VECTORS / f"{vector_id}.{step}.nnc", "--manifest", MANIFEST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"step {step} of" in r.stdout


def test_manifest_detects_wrong_values(nnr_cli, tmp_path):
    manifest = json.loads(MANIFEST.read_text())
    v = next(v for v in manifest["vectors"] if v["id"] == "p1_scan1_dq0_minilm")
    v["tensors"][0]["sha256_float32"] = "0" * 64
    doctored = tmp_path / "manifest.json"
    doctored.write_text(json.dumps(manifest))
    r = nnr_cli("verify", VECTORS / "p1_scan1_dq0_minilm.nnc", "--manifest", doctored)
    assert r.returncode == 1
    assert "values differ" in r.stdout
    assert "verification failed" in r.error_line()


def test_manifest_unknown_stream(nnr_cli, tmp_path):
    stream = tmp_path / "new.nnr"
    stream.write_bytes(nnr.encode({"w": np.ones((4, 4), np.float32)}))
    r = nnr_cli("verify", stream, "--manifest", MANIFEST)
    assert r.returncode == 1
    assert "not in the manifest" in r.error_line()


def test_manifest_other_vectors_id(nnr_cli):
    r = nnr_cli("verify", VECTORS / "p1_scan1_dq0_minilm.nnc", "--manifest", MANIFEST,
                "--id", "p1_scan1_dq1_minilm")
    assert r.returncode == 1
    assert "stream sha256 DIFFERS" in r.stdout
    r.error_line()


def test_manifest_unknown_id(nnr_cli):
    r = nnr_cli("verify", VECTORS / "p0_int_synth.nnc", "--manifest", MANIFEST, "--id", "nope")
    assert r.returncode == 1
    assert "no vector with id 'nope'" in r.error_line()


def test_manifest_sequence_without_earlier_streams(nnr_cli, tmp_path):
    shutil.copyfile(MANIFEST, tmp_path / "manifest.json")
    name = "p1_inc_tca0_hdsp0_rs1_scan3_dq0_minilm.1.nnc"
    r = nnr_cli("verify", VECTORS / name, "--manifest", tmp_path / "manifest.json")
    assert r.returncode == 1
    assert "p1_inc_tca0_hdsp0_rs1_scan3_dq0_minilm.0.nnc" in r.error_line()


# ------------------------------------------------------------------------------ --against

@pytest.fixture(scope="module")
def example_stream(tmp_path_factory) -> Path:
    with np.load(EXAMPLE) as npz:
        data = nnr.encode({k: npz[k] for k in npz.files})
    path = tmp_path_factory.mktemp("verify") / "example.nnr"
    path.write_bytes(data)
    return path


def test_against_original(nnr_cli, example_stream):
    r = nnr_cli("verify", example_stream, "--against", EXAMPLE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK: all 32 tensors match" in r.stdout
    assert "max abs err" in r.stdout


def test_against_with_error_bound(nnr_cli, example_stream):
    assert nnr_cli("verify", example_stream, "--against", EXAMPLE,
                   "--max-abs-error", "0.05").returncode == 0
    r = nnr_cli("verify", example_stream, "--against", EXAMPLE, "--max-abs-error", "1e-9")
    assert r.returncode == 1
    assert "max abs error" in r.error_line()


def test_against_name_mismatch(nnr_cli, example_stream, tmp_path):
    with np.load(EXAMPLE) as npz:
        tensors = {k: npz[k] for k in npz.files}
    tensors["extra"] = np.zeros(3, np.float32)
    del tensors["encoder.layer.0.attention.self.query.bias"]
    original = tmp_path / "orig.npz"
    np.savez(original, **tensors)
    r = nnr_cli("verify", example_stream, "--against", original)
    assert r.returncode == 1
    assert "missing from the decoded stream" in r.stdout
    assert "not in the original" in r.stdout


def test_against_integer_tensors_must_be_exact(nnr_cli, tmp_path):
    ints = {"counts": np.arange(24, dtype=np.int32).reshape(4, 6)}
    stream = tmp_path / "ints.nnr"
    stream.write_bytes(nnr.encode(ints))
    original = tmp_path / "ints.npz"
    np.savez(original, **ints)
    assert nnr_cli("verify", stream, "--against", original).returncode == 0
    np.savez(original, counts=ints["counts"] + 1)
    r = nnr_cli("verify", stream, "--against", original)
    assert r.returncode == 1
    assert "integer tensor differs" in r.stdout


@pytest.mark.parametrize("args", [[], ["--manifest", "m.json", "--against", "o.npz"],
                                  ["--manifest", "m.json", "--max-abs-error", "1"],
                                  ["--against", "o.npz", "--id", "x"]],
                         ids=["neither", "both", "bound-without-against", "id-without-manifest"])
def test_usage_errors(nnr_cli, args):
    r = nnr_cli("verify", VECTORS / "p0_int_synth.nnc", *args)
    assert r.returncode == 2
    r.error_line()
