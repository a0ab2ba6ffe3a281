"""``nnr info``: units, tensors and tools as a table, or as JSON equal to nnr.inspect."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import nnr

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"


@pytest.mark.parametrize("vector_id", ["p1_scan1_dq1_minilm", "p1_blk_ls_bnf_synth",
                                       "p1_large_1M_scan2_minilm", "p0_cb1_minilm"])
def test_table(nnr_cli, vector_id):
    path = VECTORS / f"{vector_id}.nnc"
    r = nnr_cli("info", path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    info = nnr.inspect(path.read_bytes())
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{path.name}: {path.stat().st_size} B")
    assert f"profile {info.profile}" in lines[0]
    assert lines[1].startswith("tools:")
    for tool in info.tools:
        assert tool in lines[1]
    for unit in info.units:
        assert any(str(unit.unit_type) in line and str(unit.size) in line for line in lines)
    for tensor in info.tensors:
        assert any(tensor.name in line for line in lines), tensor.name


def test_json_equals_inspect(nnr_cli):
    path = VECTORS / "p1_cb2_dq1_mixed_synth.nnc"
    r = nnr_cli("info", path, "--json")
    assert r.returncode == 0, r.stderr
    expected = json.loads(json.dumps(nnr.inspect(path.read_bytes()).to_dict()))
    assert json.loads(r.stdout) == expected


def test_stdin(nnr_cli):
    data = (VECTORS / "p1_int_1d_synth.nnc").read_bytes()
    r = nnr_cli("info", "-", "--json", stdin=data)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(json.dumps(nnr.inspect(data).to_dict()))


def test_truncated(nnr_cli, tmp_path):
    data = (VECTORS / "p1_scan3_dq1_minilm.nnc").read_bytes()
    cut = tmp_path / "cut.nnr"
    cut.write_bytes(data[: len(data) // 2])
    r = nnr_cli("info", cut)
    assert r.returncode == 1
    assert "BitstreamError" in r.error_line()


def test_missing(nnr_cli, tmp_path):
    r = nnr_cli("info", tmp_path / "absent.nnr")
    assert r.returncode == 1
    assert "absent.nnr" in r.error_line()


def test_update_stream_of_a_sequence(nnr_cli):
    """A TCA/HDSP update stream alone is an error; after its earlier steps it is shown."""
    seq = [VECTORS / f"p1_inc_tca1_hdsp1_rs1_scan2_dq0_minilm.{k}.nnc" for k in range(4)]
    alone = nnr_cli("info", seq[-1])
    assert alone.returncode == 1
    assert "BitstreamError" in alone.error_line()
    r = nnr_cli("info", *seq)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{seq[-1].name}: ")
    assert "2 tensors" in r.stdout.splitlines()[0]  # conv.weight has no NDU in step 3
