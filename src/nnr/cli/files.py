"""Reading inputs and writing outputs for the CLI.

Outputs are written to a temporary file in the destination's directory and renamed into place,
so a failed or interrupted command never leaves a half-written file. ``-`` means standard input
or output.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

STDIO = "-"
TENSOR_INPUTS = (".npz",)
STREAM_SUFFIXES = (".nnr", ".nnc")


class CliError(Exception):
    """A problem with the command's inputs or outputs (exit status 1)."""


class CliUsageError(CliError):
    """Options that do not go together, or a malformed command line (exit status 2)."""


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def read_bytes(path: str) -> bytes:
    """The whole file (or standard input for ``-``)."""
    if path == STDIO:
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CliError(f"cannot read '{path}': {_os_reason(exc)}") from None


def read_tensors(path: str) -> dict[str, np.ndarray]:
    """Named tensors from an .npz file (no pickled objects)."""
    suffix = Path(path).suffix.lower()
    if path != STDIO and suffix not in TENSOR_INPUTS:
        raise CliError(f"cannot read '{path}': unsupported tensor file type "
                       f"'{suffix or '(none)'}' (supported: {', '.join(TENSOR_INPUTS)})")
    data = read_bytes(path)
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CliError(f"cannot read '{path}' as .npz: {reason}") from None


def write_tensors(path: str, tensors: dict[str, np.ndarray]) -> None:
    """Save named tensors as an uncompressed .npz (keys may contain '/')."""
    if path == STDIO:
        buf = io.BytesIO()
        np.savez(buf, **tensors)
        write_bytes(path, buf.getvalue())
    else:
        write_atomic(path, lambda f: np.savez(f, **tensors))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it to ``path``."""
    if path == STDIO:
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise CliError(f"cannot write '{path}': {_os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CliError(f"cannot write '{path}': {_os_reason(exc)}") from None
        raise


def write_bytes(path: str, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))


def check_output_suffix(path: str, suffixes: tuple[str, ...], what: str) -> None:
    suffix = Path(path).suffix.lower()
    if path != STDIO and suffix not in suffixes:
        raise CliError(f"cannot write '{path}': a {what} file must end in "
                       f"{' or '.join(suffixes)}")
