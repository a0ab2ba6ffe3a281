"""``nnr encode``: flags map one to one onto nnr.encode options; outputs are all or nothing."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import nnr

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "minilm_slice.npz"


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture
def small(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """Three real MiniLM tensors (2-D weights and a 1-D bias) as an .npz."""
    full = _load(EXAMPLE)
    tensors = {"a": full["encoder.layer.0.attention.self.query.weight"],
               "b": full["encoder.layer.0.attention.self.query.bias"],
               "c": full["encoder.layer.0.output.dense.weight"]}
    path = tmp_path / "small.npz"
    np.savez(path, **tensors)
    return path, tensors


def test_example_encodes_like_the_api(nnr_cli, tmp_path):
    out = tmp_path / "model.nnr"
    r = nnr_cli("encode", EXAMPLE, "-o", out)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert out.read_bytes() == nnr.encode(_load(EXAMPLE))
    assert "32 tensors" in r.stdout and str(out) in r.stdout
    assert sorted(os.listdir(tmp_path)) == ["model.nnr"]


@pytest.mark.parametrize("flags, options", [
    (["--qp", "-30", "--no-dq", "--scan-order", "2"], {"qp": -30, "dq": False, "scan_order": 2}),
    (["--dq", "--scan-order", "4"], {"dq": True, "scan_order": 4}),
    (["--qp-density", "3", "--qp", "-44", "--nonweight-qp", "-80"],
     {"qp_density": 3, "qp": -44, "nonweight_qp": -80}),
    (["--codebook", "on"], {"codebook": "on"}),
    (["--codebook", "auto", "--no-dq"], {"codebook": "auto", "dq": False}),
    (["--no-param-opt", "--cabac-unary-length-minus1", "4"],
     {"param_opt": False, "cabac_unary_length_minus1": 4}),
    (["--row-skip", "--scan-order", "1", "--no-dq"],
     {"row_skip": True, "scan_order": 1, "dq": False}),
    (["--profile", "0"], {"profile": 0}),
    (["--qp-per-tensor", "a=-30", "--qp-per-tensor", "b=-60"],
     {"qp_per_tensor": {"a": -30, "b": -60}}),
    (["--threads", "1"], {"threads": 1}),
], ids=["qp-nodq-scan2", "dq-scan4", "qp-density", "codebook-on", "codebook-auto",
        "cabac", "row-skip", "profile0", "qp-per-tensor", "threads"])
def test_flags_map_to_encode_options(nnr_cli, tmp_path, small, flags, options):
    path, tensors = small
    out = tmp_path / "out.nnc"
    r = nnr_cli("encode", path, "-o", out, *flags)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == nnr.encode(tensors, **options)


def test_flags_reach_the_stream(nnr_cli, tmp_path, small):
    path, _ = small
    out = tmp_path / "out.nnr"
    r = nnr_cli("encode", path, "-o", out, "--qp", "-30", "--no-dq", "--scan-order", "2",
                "--profile", "1", "--nonweight-qp", "-60")
    assert r.returncode == 0, r.stderr
    info = nnr.inspect(out.read_bytes())
    assert info.profile == 1
    by_name = {t.name: t for t in info.tensors}
    assert set(by_name) == {"a", "b", "c"}
    for name in ("a", "c"):
        t = by_name[name]
        assert (t.qp, bool(t.dq), t.scan_order) == (-30, False, 2)
    assert by_name["b"].qp == -60


def test_stdout_output_equals_file_output(nnr_cli, tmp_path, small):
    path, _ = small
    out = tmp_path / "out.nnr"
    assert nnr_cli("encode", path, "-o", out).returncode == 0
    r = nnr_cli("encode", path, "-o", "-")
    assert r.returncode == 0, r.stderr
    assert r.raw_stdout == out.read_bytes()


def test_int32_tensors_encode(nnr_cli, tmp_path):
    path = tmp_path / "ints.npz"
    ints = {"counts": np.arange(-60, 60, dtype=np.int32).reshape(10, 12),
            "ids": np.arange(7, dtype=np.int32)}
    np.savez(path, **ints)
    out = tmp_path / "ints.nnr"
    r = nnr_cli("encode", path, "-o", out)
    assert r.returncode == 0, r.stderr
    decoded = nnr.decode(out.read_bytes())
    for name, value in ints.items():
        assert decoded[name].dtype == np.int32 and np.array_equal(decoded[name], value)


# ------------------------------------------------------------------------------ errors

def _assert_nothing_written(directory: Path, allowed: set[str]) -> None:
    assert set(os.listdir(directory)) == allowed, "a failed command left files behind"


def test_missing_input(nnr_cli, tmp_path):
    r = nnr_cli("encode", tmp_path / "absent.npz", "-o", tmp_path / "out.nnr")
    assert r.returncode == 1
    assert "absent.npz" in r.error_line() and "No such file" in r.error_line()
    _assert_nothing_written(tmp_path, set())


def test_not_an_npz(nnr_cli, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    r = nnr_cli("encode", bad, "-o", tmp_path / "out.nnr")
    assert r.returncode == 1
    assert "cannot read" in r.error_line()
    _assert_nothing_written(tmp_path, {"bad.npz"})


def test_unsupported_input_type(nnr_cli, tmp_path):
    pt = tmp_path / "model.xyz"
    pt.write_bytes(b"\x80\x02")
    r = nnr_cli("encode", pt, "-o", tmp_path / "out.nnr")
    assert r.returncode == 1
    assert "unsupported tensor file type '.xyz'" in r.error_line()


def test_output_must_be_a_stream_file(nnr_cli, tmp_path, small):
    path, _ = small
    r = nnr_cli("encode", path, "-o", tmp_path / "out.npz")
    assert r.returncode == 1
    assert ".nnr or .nnc" in r.error_line()
    _assert_nothing_written(tmp_path, {"small.npz"})


def test_output_directory_missing(nnr_cli, tmp_path, small):
    path, _ = small
    r = nnr_cli("encode", path, "-o", tmp_path / "no" / "such" / "dir" / "out.nnr")
    assert r.returncode == 1
    assert "cannot write" in r.error_line()


def test_tensor_nnr_cannot_encode_is_a_config_error(nnr_cli, tmp_path):
    path = tmp_path / "text.npz"
    np.savez(path, w=np.array(["a", "b"]))
    r = nnr_cli("encode", path, "-o", tmp_path / "out.nnr")
    assert r.returncode == 1
    assert "ConfigError" in r.error_line()
    _assert_nothing_written(tmp_path, {"text.npz"})


def test_invalid_option_value_is_a_config_error(nnr_cli, tmp_path, small):
    path, _ = small
    r = nnr_cli("encode", path, "-o", tmp_path / "out.nnr", "--qp-density", "9")
    assert r.returncode == 1
    assert "ConfigError" in r.error_line()
    _assert_nothing_written(tmp_path, {"small.npz"})


@pytest.mark.parametrize("flags", [["--scan-order", "7"], ["--codebook", "maybe"],
                                   ["--qp", "low"], ["--profile", "2"],
                                   ["--qp-per-tensor", "noequals"]])
def test_bad_flag_values_are_usage_errors(nnr_cli, tmp_path, small, flags):
    path, _ = small
    r = nnr_cli("encode", path, "-o", tmp_path / "out.nnr", *flags)
    assert r.returncode == 2
    assert flags[0] in r.error_line()
    _assert_nothing_written(tmp_path, {"small.npz"})
