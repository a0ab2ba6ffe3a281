"""Hostile streams (tests/malformed/corpus, written by make_corpus.py) through nnr.decode,
nnr.inspect and ``nnr info``.

Every file must give the outcome its manifest entry names: an error of :mod:`nnr.errors` of
the expected kind (never another exception), or, where the stream is valid, a well-formed
result (a dict of numpy arrays with sane shapes). Every bitstream error names where it
happened (unit index, unit type, byte offset). The CLI reports each failure as one line
``nnr: error: ...`` with exit status 1, never a traceback or an "internal error".

Files of the ``res`` and ``dims`` families declare huge tensors; they run in a subprocess
whose address space is limited to 2 GiB, so that a decoder that allocates what they declare
fails the test instead of exhausting the machine.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import nnr
import nnr.errors as errors
from nnr.cli.main import main as cli_main

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from known_bugs import KNOWN_BUGS  # noqa: E402
CORPUS = HERE / "corpus"
MANIFEST: dict[str, dict[str, str]] = json.loads((CORPUS / "manifest.json").read_text())
GUARDED_FAMILIES = ("res", "dims")
AS_LIMIT = 2 << 30

def _params(files: list[str]) -> list:
    return [pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[f]))
            if f in KNOWN_BUGS else f for f in files]


FILES = sorted(MANIFEST)
IN_PROCESS = _params([f for f in FILES if MANIFEST[f]["family"] not in GUARDED_FAMILIES])
GUARDED = _params([f for f in FILES if MANIFEST[f]["family"] in GUARDED_FAMILIES])


# --- what an outcome must look like -----------------------------------------------------------
def check_decoded(out: object) -> None:
    assert isinstance(out, dict)
    for name, arr in out.items():
        assert isinstance(name, str)
        assert isinstance(arr, np.ndarray)
        assert arr.dtype in (np.float32, np.float64, np.int32)
        assert arr.ndim <= 64 and all(0 <= d < 1 << 32 for d in arr.shape)


def check_info(info: object) -> None:
    assert isinstance(info, nnr.StreamInfo)
    for t in info.tensors:
        assert isinstance(t.name, str) and all(0 <= d < 1 << 32 for d in t.shape)


def check_location(exc: errors.NnrError, data: bytes) -> None:
    """A bitstream error names the unit and byte offset (all errors of a non-empty stream
    happen inside a unit); an UnsupportedFeatureError names them in its message."""
    msg = str(exc)
    if isinstance(exc, errors.BitstreamError):
        assert exc.offset is not None and f"byte {exc.offset}" in msg, msg
        assert 0 <= exc.offset <= len(data), msg
        if data:
            assert exc.unit_index is not None and f"unit {exc.unit_index}" in msg, msg
    elif isinstance(exc, errors.UnsupportedFeatureError):
        assert "unit " in msg and "byte " in msg, msg


def check_expected(name: str, result: object, exc: BaseException | None, data: bytes) -> None:
    expected = MANIFEST[name]["expected"]
    if exc is None:
        assert expected in ("ok", "any"), f"{name}: decoded, expected {expected}"
        return
    assert isinstance(exc, errors.NnrError), f"{name}: {type(exc).__name__}: {exc}"
    if expected == "ok":
        pytest.fail(f"{name}: a valid stream gave {type(exc).__name__}: {exc}")
    elif expected == "any":
        assert isinstance(exc, (errors.BitstreamError, errors.UnsupportedFeatureError)), name
    elif expected == "unsupported":
        assert isinstance(exc, errors.UnsupportedFeatureError), f"{name}: {exc!r}"
    elif expected == "error":
        assert isinstance(exc, errors.BitstreamError), f"{name}: {exc!r}"
    else:
        assert isinstance(exc, getattr(errors, expected)), f"{name}: {exc!r}"
    check_location(exc, data)


def run_api(fn, data: bytes):
    try:
        return fn(data), None
    except Exception as exc:  # noqa: BLE001 - the type is what the test checks
        return None, exc


def run_cli(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli_main(["info", str(path)])
    return status, out.getvalue(), err.getvalue()


def check_cli(name: str, status: int, err: str) -> None:
    expected = MANIFEST[name]["expected"]
    if expected == "ok":
        assert status == 0, err
        return
    if status == 0:
        assert expected == "any", f"{name}: nnr info succeeded"
        return
    assert status == 1, (status, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnr: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err


# --- the corpus -------------------------------------------------------------------------------
def test_corpus_is_complete() -> None:
    on_disk = {p.name for p in CORPUS.glob("*.nnr")}
    assert on_disk == set(MANIFEST)
    assert sum(p.stat().st_size for p in CORPUS.glob("*.nnr")) < 512 * 1024
    families = {v["family"] for v in MANIFEST.values()}
    assert {"trunc", "flip", "size", "type", "order", "hdr", "dims", "res", "unsup",
            "frame", "names"} <= families


@pytest.mark.parametrize("api", ["decode", "inspect"])
@pytest.mark.parametrize("name", IN_PROCESS)
def test_api(name: str, api: str) -> None:
    call, check = {"decode": (nnr.decode, check_decoded), "inspect": (nnr.inspect, check_info)}[api]
    data = (CORPUS / name).read_bytes()
    result, exc = run_api(call, data)
    check_expected(name, result, exc, data)
    if exc is None:
        check(result)


@pytest.mark.parametrize("name", IN_PROCESS)
def test_cli_info(name: str) -> None:
    status, _, err = run_cli(CORPUS / name)
    check_cli(name, status, err)


# --- huge declarations, under an address-space limit -----------------------------------------
_GUARDED_RUNNER = r"""
import io, json, resource, sys
from contextlib import redirect_stderr, redirect_stdout
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import nnr
from nnr.cli.main import main as cli_main
out = {}
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    rec = {}
    for fn in ("decode", "inspect"):
        try:
            r = getattr(nnr, fn)(data)
            rec[fn] = {"ok": True, "shapes": [list(a.shape) for a in r.values()] if fn == "decode"
                       else [list(t.shape) for t in r.tensors]}
        except BaseException as exc:
            rec[fn] = {"ok": False, "type": type(exc).__name__, "module": type(exc).__module__,
                       "message": str(exc), "offset": getattr(exc, "offset", None),
                       "unit_index": getattr(exc, "unit_index", None)}
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        status = cli_main(["info", path])
    rec["cli"] = {"status": status, "stderr": err.getvalue()}
    out[path.rsplit("/", 1)[-1]] = rec
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def guarded_results() -> dict[str, dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(nnr.__file__).parents[1]), env.get("PYTHONPATH")) if p)
    names = [f for f in FILES if MANIFEST[f]["family"] in GUARDED_FAMILIES]
    proc = subprocess.run([sys.executable, "-c", _GUARDED_RUNNER, str(AS_LIMIT),
                           *[str(CORPUS / f) for f in names]],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


class _Rebuilt(Exception):
    pass


def _rebuild(rec: dict) -> BaseException:
    """An exception of the recorded class carrying the recorded location (for the checks)."""
    cls = getattr(errors, rec["type"], None) if rec["module"] == "nnr.errors" else None
    if cls is None:
        return _Rebuilt(f"{rec['module']}.{rec['type']}: {rec['message']}")
    exc = cls.__new__(cls)
    Exception.__init__(exc, rec["message"])
    exc.offset, exc.unit_index = rec["offset"], rec["unit_index"]
    return exc


@pytest.mark.parametrize("name", GUARDED)
@pytest.mark.parametrize("fn", ["decode", "inspect"])
def test_huge_declarations(guarded_results: dict, name: str, fn: str) -> None:
    rec = guarded_results[name][fn]
    data = (CORPUS / name).read_bytes()
    if rec["ok"]:
        check_expected(name, rec, None, data)
        assert all(0 <= d < 1 << 32 for shape in rec["shapes"] for d in shape)
    else:
        assert rec["type"] != "MemoryError", f"{name}: the decoder tried to allocate > 2 GiB"
        check_expected(name, None, _rebuild(rec), data)


@pytest.mark.parametrize("name", GUARDED)
def test_huge_declarations_cli(guarded_results: dict, name: str) -> None:
    cli = guarded_results[name]["cli"]
    assert "out of memory" not in cli["stderr"], cli["stderr"]
    check_cli(name, cli["status"], cli["stderr"])


# --- the real command, in its own process -----------------------------------------------------
@pytest.mark.parametrize("name", ["frame_empty.nnr", "hdr_payload_type_4.nnr",
                                  "res_cb1_2p31.nnr", "order_no_mps.nnr",
                                  "unsup_profile_2.nnr", "dims_2p31_2d.nnr"])
def test_cli_process(name: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(nnr.__file__).parents[1]), env.get("PYTHONPATH")) if p)
    env.pop("NNR_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "nnr.cli.main", "info", str(CORPUS / name)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnr: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    if not name.startswith("frame_empty"):
        assert "unit " in lines[0] and "byte " in lines[0], lines[0]


# --- nothing is dropped silently ----------------------------------------------------------------
def test_aggregate_units_are_decoded_or_refused() -> None:
    data = (CORPUS / "order_agg.nnr").read_bytes()
    try:
        out = nnr.decode(data)
    except errors.NnrError:
        return
    assert out, "the two NDUs of the aggregate unit were dropped silently"


# --- hostile tensor names through `nnr decode` ----------------------------------------------------
@pytest.mark.parametrize("name", [
    *(f"names_{tag}.nnr" for tag in ("dotdot", "abs", "file", "allow_pickle")),
    "names_empty.nnr"])
def test_cli_decode_keeps_or_refuses_hostile_names(name: str, tmp_path: Path) -> None:
    """Every tensor lands in the .npz under a safe member name, or the command refuses the
    stream in one line; nothing is dropped and no member name leaves the archive root."""
    import zipfile
    tensors = nnr.decode((CORPUS / name).read_bytes())
    out = tmp_path / "out.npz"
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        status = cli_main(["decode", str(CORPUS / name), "-o", str(out)])
    if status != 0:
        check_cli("frame_empty.nnr", status, err.getvalue())   # a one-line refusal
        return
    members = zipfile.ZipFile(out).namelist()
    assert len(members) == len(tensors), members
    for m in members:
        assert not m.startswith("/") and ".." not in m.split("/"), m


# --- where an error happened --------------------------------------------------------------------
def test_errors_name_unit_type_and_offset() -> None:
    sys.path.insert(0, str(HERE))
    import make_corpus as mc
    s, m = mc.str_unit(), mc.mps_unit()
    good = mc.ndu_unit(dims=(4, 4), payload=mc._payload(4, 4))
    bad_payload = mc.ndu_unit(dims=(4, 4), payload=mc._payload(4, 4)[:-2])
    start = len(s + m + good)
    for fn in (nnr.decode, nnr.inspect):
        # a payload error: the unit, its type and the unit's offset
        with pytest.raises(errors.BitstreamError) as info:
            fn(s + m + good + bad_payload)
        assert (info.value.unit_index, info.value.unit_type) == (3, "NNR_NDU")
        assert f"unit 3, NNR_NDU, byte {start}" in str(info.value)
        # a header field: the byte of the field, inside the unit
        with pytest.raises(errors.NonConformingBitstreamError) as info:
            fn(s + m + good + mc.ndu_unit(dims=(16, 16), scan=9))
        assert info.value.unit_index == 3 and start < info.value.offset < start + 20
        assert f"byte {info.value.offset}" in str(info.value)
        # a unit that runs past the end: the unit and where it starts
        with pytest.raises(errors.TruncatedBitstreamError) as info:
            fn(s + m + good + good[:5])
        assert info.value.unit_index == 3 and info.value.offset == start
