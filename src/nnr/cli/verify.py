"""``nnr verify``: decode a stream and check it against a conformance manifest or the original.

With ``--manifest``, the stream is looked up by its SHA-256 (or by ``--id``) and every decoded
tensor is checked as ``tests/vectors/README.md`` defines it: name, shape, dtype and
``sha256_float32`` (the SHA-256 of the tensor as little-endian float32, int32 for integer
tensors), plus ``sha256_raw_float64`` for float64 tensors. A stream of an incremental sequence
is decoded after the earlier streams of its sequence, which are read from the manifest's
directory. With ``--against``, names and shapes must match the original tensors and the error
statistics are reported (integer tensors must match exactly; ``--max-abs-error`` bounds the
others).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import nnr
from nnr.cli import files, tables
from nnr.cli.files import CliError, CliUsageError
from nnr.decoder import decode_recomposed


def sha256_float32(array: np.ndarray) -> str:
    """The manifest's ``sha256_float32``: int32 bytes for integer tensors, float32 otherwise."""
    dtype = "<i4" if np.asarray(array).dtype.kind in "iu" else "<f4"
    return hashlib.sha256(np.ascontiguousarray(array, dtype=dtype).tobytes()).hexdigest()


def sha256_raw_float64(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f8").tobytes()).hexdigest()


@dataclass
class Report:
    """Rows of the result table and the problems found."""
    headers: list[str]
    rows: list[list[object]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, row: list[object], problem: str | None, ok: str = "ok") -> None:
        self.rows.append(row + [problem or ok])
        if problem:
            self.problems.append(f"{row[0]}: {problem}")


# ---------------------------------------------------------------------------------- manifest

def _load_manifest(path: str) -> dict:
    try:
        manifest = json.loads(files.read_bytes(path))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read '{path}' as a manifest: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("vectors"), list):
        raise CliError(f"cannot read '{path}' as a manifest: no 'vectors' list")
    return manifest


def _find_vector(manifest: dict, vector_id: str | None, digest: str) -> tuple[dict, int | None]:
    """The vector, and the step of the stream in it (None: the stream is not in the vector)."""
    for vector in manifest["vectors"]:
        hashes = vector.get("stream_sha256", [])
        if vector_id is not None and vector.get("id") != vector_id:
            continue
        if digest in hashes:
            return vector, hashes.index(digest)
        if vector_id is not None:
            return vector, None
    if vector_id is not None:
        raise CliError(f"no vector with id '{vector_id}' in the manifest")
    raise CliError("the stream's sha256 is not in the manifest (pass --id to name the vector)")


def _earlier_streams(vector: dict, step: int, manifest_dir: Path) -> list[bytes]:
    out = []
    for name, digest in zip(vector["streams"][:step], vector["stream_sha256"][:step]):
        data = files.read_bytes(str(manifest_dir / name))
        if hashlib.sha256(data).hexdigest() != digest:
            raise CliError(f"'{manifest_dir / name}' does not match its sha256 in the manifest")
        out.append(data)
    return out


def _decoder_state(vector: dict) -> object:
    """A fresh decoder state; HDSP use is passed on where nnr.DecoderState takes it."""
    hdsp = bool((vector.get("incremental") or {}).get("hdsp"))
    if "hdsp" in inspect.signature(nnr.DecoderState).parameters:
        return nnr.DecoderState(hdsp=hdsp)
    return nnr.DecoderState()


def _decode_step(vector: dict, step: int, data: bytes, manifest_dir: Path) -> dict:
    if vector.get("incremental") is None and len(vector.get("streams", [])) <= 1:
        return dict(nnr.decode(data))
    state = _decoder_state(vector)
    for earlier in _earlier_streams(vector, step, manifest_dir):
        nnr.decode(earlier, state=state)
    return dict(nnr.decode(data, state=state))


def _check_tensor(expected: dict, decoded: np.ndarray | None) -> str | None:
    if decoded is None:
        return "missing from the decoded stream"
    if list(decoded.shape) != list(expected["shape"]):
        return f"shape {tables.shape(decoded.shape)}, expected {tables.shape(expected['shape'])}"
    if str(decoded.dtype) != expected["dtype"]:
        return f"dtype {decoded.dtype}, expected {expected['dtype']}"
    if sha256_float32(decoded) != expected["sha256_float32"]:
        return "values differ (sha256_float32)"
    raw = expected.get("sha256_raw_float64")
    if raw is not None and sha256_raw_float64(decoded) != raw:
        return "values differ (sha256_raw_float64)"
    return None


def check_manifest(decoded: dict, vector: dict, step: int) -> Report:
    report = Report(["tensor", "shape", "dtype", "result"])
    expected = [t for t in vector["tensors"] if t.get("step", 0) == step]
    for t in expected:
        got = decoded.get(t["name"])
        report.add([t["name"], tables.shape(t["shape"]), t["dtype"]], _check_tensor(t, got))
    absent = {a["name"] for a in vector.get("absent_tensors", []) if a.get("step", 0) == step}
    known = {t["name"] for t in expected}
    for name in sorted(absent - set(decoded)):
        report.add([name, "-", "-"], None, ok="absent (no NDU), as expected")
    for name in sorted(set(decoded) - known):
        why = "has no NDU in the stream but was decoded" if name in absent else \
            "not in the manifest"
        report.add([name, tables.shape(decoded[name].shape), str(decoded[name].dtype)], why)
    return report


def verify_manifest(args: argparse.Namespace, data: bytes) -> tuple[str, Report]:
    manifest = _load_manifest(args.manifest)
    digest = hashlib.sha256(data).hexdigest()
    vector, step = _find_vector(manifest, args.id, digest)
    if step is None:
        if len(vector.get("streams", [])) != 1:
            raise CliError(f"the stream is not one of the streams of vector '{vector['id']}' "
                           "(its sha256 differs from all of them)")
        step = 0
    decoded = _decode_step(vector, step, data, Path(args.manifest).resolve().parent)
    report = check_manifest(decoded, vector, step)
    expected_digest = vector["stream_sha256"][step]
    if digest != expected_digest:
        report.problems.insert(0, "stream sha256 differs from the manifest")
    steps = len(vector.get("streams", []))
    where = f"vector {vector['id']}" + (f", step {step} of {steps}" if steps > 1 else "")
    stream = "stream sha256 matches" if digest == expected_digest else "stream sha256 DIFFERS"
    return f"{where}: {stream}", report


# ---------------------------------------------------------------------------------- original

def _error_stats(original: np.ndarray, decoded: np.ndarray) -> tuple[float, float]:
    diff = decoded.astype(np.float64) - original.astype(np.float64)
    if diff.size == 0:
        return 0.0, 0.0
    return float(np.max(np.abs(diff))), float(np.sqrt(np.mean(diff * diff)))


def _compare(original: np.ndarray, decoded: np.ndarray, bound: float | None) -> tuple[
        float | None, float | None, str | None]:
    if original.shape != decoded.shape:
        return None, None, (f"shape {tables.shape(decoded.shape)}, "
                            f"expected {tables.shape(original.shape)}")
    max_err, rmse = _error_stats(original, decoded)
    if original.dtype.kind in "iub" and max_err != 0:
        return max_err, rmse, "integer tensor differs"
    if not np.isfinite(max_err):
        return max_err, rmse, "non-finite error"
    if bound is not None and max_err > bound:
        return max_err, rmse, f"max abs error {tables.number(max_err)} > {tables.number(bound)}"
    return max_err, rmse, None


def check_against(decoded: dict, original: dict, bound: float | None) -> Report:
    report = Report(["tensor", "shape", "dtype", "max abs err", "rmse", "result"])
    for name, orig in original.items():
        got = decoded.get(name)
        if got is None:
            report.add([name, tables.shape(orig.shape), str(orig.dtype), None, None],
                       "missing from the decoded stream")
            continue
        max_err, rmse, problem = _compare(orig, got, bound)
        report.add([name, tables.shape(got.shape), str(got.dtype), max_err, rmse], problem)
    for name in sorted(set(decoded) - set(original)):
        got = decoded[name]
        report.add([name, tables.shape(got.shape), str(got.dtype), None, None],
                   "not in the original")
    return report


def read_original(path: str) -> dict:
    """The original tensors: an .npz, or a model file in any format nnr reads."""
    from nnr.adapters._registry import format_of_path
    from nnr.cli import models
    fmt = None if path == files.STDIO else format_of_path(path)
    if fmt in (None, "numpy"):
        return files.read_tensors(path)
    return models.read_model(path, fmt).tensors


def verify_against(args: argparse.Namespace, data: bytes) -> tuple[str, Report]:
    original = read_original(args.against)
    report = check_against(decode_recomposed(data), original, args.max_abs_error)
    return f"against {args.against}", report


def run_verify(args: argparse.Namespace) -> int:
    if args.max_abs_error is not None and args.against is None:
        raise CliUsageError("--max-abs-error needs --against (see 'nnr verify --help')")
    if args.id is not None and args.manifest is None:
        raise CliUsageError("--id needs --manifest (see 'nnr verify --help')")
    data = files.read_bytes(args.input)
    title, report = verify_manifest(args, data) if args.manifest else verify_against(args, data)
    print(f"{args.input}: {title}")
    print("\n".join(tables.table(report.headers, report.rows,
                                 right=range(3, len(report.headers) - 1))))
    checked = len(report.rows)
    if report.problems:
        print(f"FAIL: {len(report.problems)} problem(s) in {checked} tensors")
        raise VerifyFailed(f"verification failed: {report.problems[0]}"
                           + (f" (and {len(report.problems) - 1} more)"
                              if len(report.problems) > 1 else ""))
    print(f"OK: all {checked} tensors match")
    return 0


class VerifyFailed(CliError):
    """The stream decodes but does not match (exit status 1)."""
