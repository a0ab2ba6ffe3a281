"""atheris harness over ``nnr.decode`` and ``nnr.inspect``.

Every input is an NNR bitstream. ``nnr.decode`` and ``nnr.inspect`` must either return a
well-formed result or raise an :class:`nnr.NnrError`; any other exception (or a crash of the
native core) is a finding. Run it with libFuzzer flags::

    python tests/fuzz/fuzz_decode.py CORPUS_DIR SEED_DIR -max_len=16384 -timeout=20 \\
        -rss_limit_mb=4096 -max_total_time=60

Seeds: the conformance vectors (``tests/vectors/*.nnc``) and the small streams that
``tests/malformed/make_corpus.py --seeds DIR`` writes. Run long campaigns on a private copy
of the package (``cp -r src/nnr DIR`` and ``PYTHONPATH=DIR``): rebuilding ``_core`` in place
under a running fuzzer crashes it.

Environment:

``NNR_FUZZ_AS_MB``       address-space limit of the process in MiB (default 4096), so that a
                         stream asking for gigabytes fails with MemoryError instead of taking
                         the machine down; 0 disables it.
``NNR_FUZZ_MEMORY_OK``   1: a MemoryError is not a finding (for long runs before the decoder
                         enforces resource limits; such inputs are still written to
                         NNR_FUZZ_FINDINGS).
``NNR_FUZZ_FINDINGS``    a directory: findings are written there (input and traceback, one
                         file pair per distinct exception site) and the run goes on instead of
                         stopping at the first one.

:func:`one_input` needs no atheris; ``tests/fuzz/test_fuzz_harness.py`` runs it on the seeds.
"""
from __future__ import annotations

import hashlib
import os
import sys
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _import_nnr():
    import nnr
    return nnr


nnr = None  # set by _setup (instrumented when run under atheris)


def _check_decoded(out: object) -> None:
    if not isinstance(out, dict):
        raise AssertionError(f"decode returned {type(out).__name__}, not dict")
    for name, arr in out.items():
        if not isinstance(name, str):
            raise AssertionError(f"tensor name {name!r} is not a str")
        if not isinstance(arr, np.ndarray):
            raise AssertionError(f"tensor {name!r} is {type(arr).__name__}, not ndarray")
        if arr.dtype not in (np.float32, np.float64, np.int32):
            raise AssertionError(f"tensor {name!r} has dtype {arr.dtype}")
        if any(d < 0 for d in arr.shape):
            raise AssertionError(f"tensor {name!r} has shape {arr.shape}")


def _check_info(info: object, decoded: dict) -> None:
    shapes = {t.name: tuple(t.shape) for t in info.tensors}
    for name, arr in decoded.items():
        if name in shapes and shapes[name] != arr.shape:
            raise AssertionError(f"inspect says {name!r} is {shapes.get(name)}, decode gave "
                                 f"{arr.shape}")


def one_input(data: bytes) -> None:
    """Decode and inspect ``data``; raise on anything that is not an NnrError."""
    global nnr
    if nnr is None:
        nnr = _import_nnr()
    try:
        decoded = nnr.decode(data, threads=1)
    except nnr.NnrError:
        return
    _check_decoded(decoded)
    # inspect decodes the same payloads (a stream decode rejects is rarely worth a second
    # run); it starts from a fresh DecoderState where decode has none, so the two may
    # disagree on an update stream that uses temporal context adaptation: only shapes of
    # tensors both return are compared.
    try:
        info = nnr.inspect(data)
    except nnr.NnrError:
        return
    _check_info(info, decoded)


def _signature(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    last = tb[-1] if tb else None
    where = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
    return f"{type(exc).__name__}@{where}"


def _finding_sink(directory: str):
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()

    def record(data: bytes, exc: BaseException) -> None:
        sig = _signature(exc)
        if sig in seen:
            return
        seen.add(sig)
        stem = hashlib.sha1(sig.encode()).hexdigest()[:12]
        (out / f"{stem}.nnc").write_bytes(data)
        (out / f"{stem}.txt").write_text(
            sig + "\n" + "".join(traceback.format_exception(exc)))
        print(f"finding {sig}: {out / stem}.nnc", file=sys.stderr, flush=True)

    return record


def _limit_address_space() -> None:
    mb = int(os.environ.get("NNR_FUZZ_AS_MB", "4096"))
    if mb <= 0:
        return
    import resource
    limit = mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> None:
    import atheris
    global nnr
    with atheris.instrument_imports(include=["nnr"]):
        nnr = _import_nnr()
    _limit_address_space()
    memory_ok = os.environ.get("NNR_FUZZ_MEMORY_OK") == "1"
    findings = os.environ.get("NNR_FUZZ_FINDINGS")
    record = _finding_sink(findings) if findings else None

    def test_one_input(data: bytes) -> None:
        try:
            one_input(data)
        except MemoryError as exc:
            if record is not None:
                record(data, exc)
            if not memory_ok:
                raise
        except Exception as exc:  # noqa: BLE001 - every non-NnrError is a finding
            if record is None:
                raise
            record(data, exc)

    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
