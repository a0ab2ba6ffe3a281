"""The command's contract for every subcommand: one-line errors, exit statuses, no tracebacks,
no half-written outputs."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import nnr
from nnr.cli import files

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"


def test_version(nnr_cli):
    r = nnr_cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"nnr {nnr.__version__}"


def test_help(nnr_cli):
    r = nnr_cli("--help")
    assert r.returncode == 0
    for command in ("encode", "decode", "info", "verify"):
        assert command in r.stdout
        sub = nnr_cli(command, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: nnr {command}")


@pytest.mark.parametrize("args", [[], ["compress"], ["decode"], ["info"],
                                  ["encode", "x.npz"], ["info", "a.nnr", "--bogus"]],
                         ids=["nothing", "unknown-command", "decode-no-args", "info-no-args",
                              "encode-no-output", "unknown-option"])
def test_usage_errors_exit_2_with_one_line(nnr_cli, args):
    r = nnr_cli(*args)
    assert r.returncode == 2
    assert "--help" in r.error_line()
    assert r.stdout == ""


@pytest.mark.parametrize("args", [
    ["encode", "{missing}.npz", "-o", "{tmp}/o.nnr"],
    ["decode", "{missing}.nnr", "-o", "{tmp}/o.npz"],
    ["info", "{missing}.nnr"],
    ["verify", "{missing}.nnr", "--manifest", str(VECTORS / "manifest.json")],
    ["verify", "{missing}.nnr", "--against", "{missing}.npz"],
    ["verify", str(VECTORS / "p0_int_synth.nnc"), "--manifest", "{missing}.json"],
], ids=["encode", "decode", "info", "verify-manifest", "verify-against", "manifest-file"])
def test_missing_files_exit_1_with_one_line(nnr_cli, tmp_path, args):
    missing = tmp_path / "does-not-exist"
    argv = [a.format(missing=missing, tmp=tmp_path) for a in args]
    r = nnr_cli(*argv)
    assert r.returncode == 1
    line = r.error_line()
    assert "does-not-exist" in line and "No such file or directory" in line
    assert os.listdir(tmp_path) == []


def test_directory_as_input(nnr_cli, tmp_path):
    r = nnr_cli("info", tmp_path)
    assert r.returncode == 1
    assert "cannot read" in r.error_line()


def test_error_messages_are_single_line_even_for_multiline_reasons(nnr_cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  not json\n")
    r = nnr_cli("verify", VECTORS / "p0_int_synth.nnc", "--manifest", bad)
    assert r.returncode == 1
    assert "cannot read" in r.error_line()


def test_console_script():
    """The installed ``nnr`` script (skipped when nnr is only on PYTHONPATH)."""
    script = shutil.which("nnr")
    if script is None:
        pytest.skip("no 'nnr' console script on PATH (package not installed)")
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("nnr ")


# ---------------------------------------------------------------- atomic output, in process

def test_write_atomic_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.nnr"

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        files.write_atomic(str(target), fail)
    assert os.listdir(tmp_path) == []


def test_write_atomic_replaces_and_keeps_umask_permissions(tmp_path):
    target = tmp_path / "out.nnr"
    target.write_bytes(b"old")
    files.write_bytes(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.nnr"]
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_write_atomic_unwritable_directory(tmp_path):
    with pytest.raises(files.CliError, match="cannot write"):
        files.write_bytes(str(tmp_path / "missing" / "out.nnr"), b"x")
