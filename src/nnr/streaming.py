"""File-to-file coding that holds only the tensors in flight: models larger than memory.

``encode_file`` reads a ``.npz`` or ``.safetensors`` model tensor by tensor (safetensors is
memory-mapped and each tensor copied out only when its turn comes) and writes the NNR units as
they are produced; ``decode_file`` reads one unit at a time and writes each decoded tensor to
a ``.npz`` (zip entries written one by one) or ``.safetensors`` (header from a first pass over
the unit headers, then the data in stream order). Outputs go to a temporary file in the target
directory and are renamed at the end, so no half-written file is ever left behind.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import zipfile
from contextlib import contextmanager
from math import prod
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from nnr.bitstream.enums import NnrUnitType, PayloadType
from nnr.bitstream.stream import StreamContext, iter_file_units
from nnr.config import DecodeLimits, EncodeConfig
from nnr.decoder import (DecoderState, _dc_weight_name, _elements, decode_file_units,
                         paired_decomposed, recomposed_units)
from nnr.encoder import EncoderState, Topology, iter_units
from nnr.errors import ConfigError, UnsupportedFeatureError

__all__ = ["encode_file", "decode_file", "open_tensors", "SafetensorsReader"]

_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
              "U16": np.uint16, "U32": np.uint32, "U64": np.uint64}


class SafetensorsReader(Mapping):
    """Lazy reader of a ``.safetensors`` file (numpy only).

    Each access reads one tensor from the file into a fresh array (bfloat16 is widened to
    float32), so that only the tensors in flight are resident: a memory map would keep every
    page it touched in the process's RSS until the kernel evicts it. The ``__metadata__`` entry
    is in :attr:`metadata`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._file = open(path, "rb")
        try:
            head = self._file.read(8)
            if len(head) < 8:
                raise ConfigError(f"{path}: not a safetensors file (too short)")
            (n,) = struct.unpack("<Q", head)
            size = os.fstat(self._file.fileno()).st_size
            if n > min(size - 8, 100 << 20):
                raise ConfigError(f"{path}: safetensors header size {n} is invalid")
            header = json.loads(self._file.read(n))
            self._size = size
        except (ValueError, UnicodeDecodeError) as exc:
            self._file.close()
            raise ConfigError(f"{path}: not a safetensors file ({exc})") from None
        self.metadata = header.pop("__metadata__", None) or {}
        self._start = 8 + n
        self._entries = header
        for name, e in header.items():
            if e.get("dtype") not in _ST_DTYPES and e.get("dtype") != "BF16":
                raise UnsupportedFeatureError(f"{path}: tensor {name!r} has dtype {e.get('dtype')}")

    def __getitem__(self, name: str) -> np.ndarray:
        e = self._entries[name]
        begin, end = (self._start + int(o) for o in e["data_offsets"])
        shape = tuple(int(d) for d in e["shape"])
        if not self._start <= begin <= end <= self._size:
            raise ConfigError(f"tensor {name!r}: data offsets outside the safetensors file")
        bf16 = e["dtype"] == "BF16"
        dt = np.dtype("<u2" if bf16 else _ST_DTYPES[e["dtype"]]).newbyteorder("<")
        out = np.empty((end - begin) // dt.itemsize, dtype=dt)
        view = memoryview(out).cast("B")
        got = 0
        while got < len(view):
            n = os.preadv(self._file.fileno(), [view[got:]], begin + got)
            if n <= 0:
                raise ConfigError(f"tensor {name!r}: the safetensors file ends early")
            got += n
        if bf16:
            return (out.astype(np.uint32) << 16).view(np.float32).reshape(shape)
        return out.reshape(shape)

    def shape_of(self, name: str) -> tuple[int, ...]:
        """The shape of ``name`` from the header (nothing is read)."""
        return tuple(int(d) for d in self._entries[name]["shape"])

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        self._file.close()


@contextmanager
def open_tensors(path: str | os.PathLike):
    """A lazy mapping of the tensors in a ``.npz`` or ``.safetensors`` file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such file: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as npz:
            yield npz
    elif suffix == ".safetensors":
        reader = SafetensorsReader(p)
        try:
            yield reader
        finally:
            reader.close()
    else:
        raise UnsupportedFeatureError(f"streaming supports .npz and .safetensors, not {suffix!r}")


@contextmanager
def _atomic_output(path: Path):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_file(src: str | os.PathLike, dst: str | os.PathLike,
                config: EncodeConfig | None = None, *, state: EncoderState | None = None,
                topology: Topology | None = None, progress=None, **options: Any) -> int:
    """Encode a model file into an NNR stream file, tensor by tensor; returns its size.

    ``progress(done_units)`` is called after each unit is written, if given.
    """
    cfg = EncodeConfig.from_options(config, **options)
    out = Path(dst)
    total = 0
    with open_tensors(src) as tensors, _atomic_output(out) as tmp, open(tmp, "wb") as f:
        for i, unit in enumerate(iter_units(tensors, cfg, state, topology)):
            f.write(unit)
            total += len(unit)
            if progress is not None:
                progress(i)
    return total


def _npz_writer(path: Path):
    zf = zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True)

    def write(name: str, arr: np.ndarray) -> None:
        with zf.open(name + ".npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array(entry, np.ascontiguousarray(arr), allow_pickle=False)

    return zf, write


def _planned_tensors(src: Path, recompose: bool) -> list[tuple[str, tuple[int, ...], str]]:
    """Names, shapes and output dtypes of the tensors, from the unit headers alone (with
    ``recompose``, as :func:`nnr.decoder.recomposed_units` names and shapes them)."""
    ctx = StreamContext()

    def declared():
        for unit, _, _ in iter_file_units(f, ctx):
            if unit.unit_type != NnrUnitType.NDU:
                continue
            hdr = unit.header
            if hdr.payload_type == PayloadType.RAW_FLOAT:
                yield unit, [(str(hdr.topology_elem_ids[0]), (tuple(unit.dims), "F32"))]
                continue
            yield unit, [(e.name, (tuple(e.dims), "I32" if hdr.payload_type == PayloadType.INT
                                   else ("F64" if e.codebook is not None else "F32")))
                         for e in _elements(unit, ctx)]

    with open(src, "rb") as f:
        units = declared()
        if recompose:
            units = paired_decomposed(units, lambda unit, g, _: (
                _dc_weight_name(g[0]), (tuple(unit.dims), "F32")))
        return [(name, shape, dtype) for _, entries in units for name, (shape, dtype) in entries]


def decode_file(src: str | os.PathLike, dst: str | os.PathLike, *,
                state: DecoderState | None = None, legacy: bool | None = None,
                limits: DecodeLimits | None = None, threads: int | None = None,
                names=None, progress=None, recompose: bool = True) -> int:
    """Decode an NNR stream file into ``.npz`` or ``.safetensors``, one unit at a time;
    returns the number of tensors written. With ``recompose`` (the default, as for a decoded
    model) every decomposed weight comes back as ``W = G @ H`` under its own name
    (:func:`nnr.decoder.recomposed_units`), and ``names`` refer to those."""
    src, out = Path(src), Path(dst)
    if not src.is_file():
        raise ConfigError(f"no such file: {src}")
    suffix = out.suffix.lower()
    if suffix not in (".npz", ".safetensors"):
        raise UnsupportedFeatureError(f"decode_file writes .npz or .safetensors, not {suffix!r}")
    wanted = None if names is None else set(names)
    count = 0
    with _atomic_output(out) as tmp, open(src, "rb") as f:
        decoded = decode_file_units(f, state=state, legacy=legacy, limits=limits,
                                    threads=threads, names=wanted)
        units = recomposed_units(decoded) if recompose else \
            ((unit, [(t.name, t.array) for t in tensors]) for unit, _, tensors in decoded)
        if suffix == ".npz":
            zf, write = _npz_writer(tmp)
            with zf:
                for _, named in units:
                    for name, array in named:
                        if wanted is None or name in wanted:
                            write(name, array)
                            count += 1
                            if progress is not None:
                                progress(count)
        else:
            count = _write_safetensors(src, tmp, units, wanted, recompose, progress)
    return count


def _write_safetensors(src: Path, tmp: Path, units, wanted, recompose: bool, progress) -> int:
    plan = [p for p in _planned_tensors(src, recompose) if wanted is None or p[0] in wanted]
    sizes = {"F32": 4, "F64": 8, "I32": 4}
    header, offset = {}, 0
    for name, shape, dtype in plan:
        n = prod(shape) * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    count = 0
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(blob)) + blob)
        for _, named in units:
            for name, array in named:
                if name not in header:
                    continue
                want = {"F32": "<f4", "F64": "<f8", "I32": "<i4"}[header[name]["dtype"]]
                out.write(memoryview(np.ascontiguousarray(array, dtype=want)).cast("B"))
                count += 1
                if progress is not None:
                    progress(count)
    if count != len(plan):
        raise ConfigError("the stream's tensors differ from its unit headers")
    return count
