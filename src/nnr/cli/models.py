"""Reading and writing models in every format nnr has an adapter for (the CLI's side of
:mod:`nnr.adapters`): formats by file suffix or ``--format``, outputs all or nothing."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from nnr import adapters
from nnr.adapters._registry import ADAPTERS, extensions, format_of_path
from nnr.cli.files import STDIO, CliError, _os_reason, read_bytes
from nnr.model import Model


def supported() -> str:
    return ", ".join(extensions() + ["an NNEF folder"])


def _format(path: str, fmt: str | None, failure: str) -> str:
    """The adapter for ``path``: ``--format``, standard input as .npz, else the file suffix;
    ``failure`` begins the error message ("cannot read '...': unsupported tensor file type")."""
    if fmt:
        return fmt
    if path == STDIO:
        return "numpy"
    found = format_of_path(path)
    if found is None:
        suffix = Path(path).suffix.lower()
        raise CliError(f"{failure} '{suffix or '(none)'}' (supported: {supported()}; or name it "
                       "with --format)")
    return found


def input_format(path: str, fmt: str | None) -> str:
    return _format(path, fmt, f"cannot read '{path}': unsupported tensor file type")


def output_format(path: str, fmt: str | None) -> str:
    return _format(path, fmt, f"cannot write '{path}': unsupported model file type")


def read_model(path: str, fmt: str) -> Model:
    """Load ``path`` with the ``fmt`` adapter (standard input through a temporary file)."""
    adapter = adapters.get(fmt)
    if path == STDIO:
        suffix = ADAPTERS[adapter.NAME].suffixes[0]
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / f"stdin{suffix}"
            target.write_bytes(read_bytes(STDIO))
            return adapter.load(target)
    if not os.path.exists(path):
        raise CliError(f"cannot read '{path}': No such file or directory")
    if os.path.isdir(path) and fmt != "nnef":
        raise CliError(f"cannot read '{path}': Is a directory")
    try:
        return adapter.load(path)
    except OSError as exc:
        raise CliError(f"cannot read '{path}': {_os_reason(exc)}") from None


def write_model(path: str, model: Model, fmt: str) -> None:
    """Save ``model`` to ``path`` through a temporary file (or folder) renamed into place."""
    adapter = adapters.get(fmt)
    if path == STDIO:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / f"out{ADAPTERS[adapter.NAME].suffixes[0]}"
            adapter.save(model, target)
            sys.stdout.buffer.write(target.read_bytes())
            sys.stdout.buffer.flush()
        return
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise CliError(f"cannot write '{path}': No such file or directory")
    if target.is_dir() and any(target.iterdir()):
        raise CliError(f"cannot write '{path}': a folder that is not empty")
    try:
        tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as exc:
        raise CliError(f"cannot write '{path}': {_os_reason(exc)}") from None
    try:
        staged = tmp / target.name
        adapter.save(model, staged)
        _replace(staged, target, tmp)
    except OSError as exc:
        raise CliError(f"cannot write '{path}': {_os_reason(exc)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace(staged: Path, target: Path, tmp: Path) -> None:
    """Move ``staged`` (and any sidecar files it wrote, e.g. ONNX external data) to the
    target's directory; a folder replaces an empty folder."""
    os.replace(staged, target)
    mask = os.umask(0o022)
    os.umask(mask)
    if target.is_file():
        os.chmod(target, 0o666 & ~mask)
    for extra in tmp.iterdir():
        os.replace(extra, target.parent / extra.name)
