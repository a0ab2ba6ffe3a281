"""Encoder input validation: every input is either coded correctly (and round-trips) or refused
with ConfigError; never another exception, never a stream that does not decode."""
from __future__ import annotations

import numpy as np
import pytest

import nnr
from nnr.errors import ConfigError

F = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) / 10

def roundtrip(tensors: dict, **options) -> dict[str, np.ndarray]:
    """Encode, decode, and check names and shapes (0-d tensors come back as shape (1,))."""
    data = nnr.encode(tensors, threads=1, **options)
    out = nnr.decode(data, threads=1)
    assert list(out) == list(tensors)
    for name, value in tensors.items():
        shape = np.shape(value)
        assert out[name].shape == (shape if shape != () else (1,))
    info = nnr.inspect(data)
    assert [t.name for t in info.tensors] == list(tensors)
    return out


def close(decoded: np.ndarray, original, rel: float = 2e-3) -> bool:
    x = np.asarray(original, dtype=np.float64).reshape(decoded.shape)
    tol = rel * max(float(np.abs(x).max(initial=0.0)), 1.0)
    return bool(np.all(np.abs(decoded.astype(np.float64) - x) <= tol))


# --- values -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_nan_and_inf_are_refused(bad: float, dtype) -> None:
    w = np.array([[1.0, bad], [0.5, 0.25]], dtype=dtype)
    with pytest.raises(ConfigError, match="'w'"):
        nnr.encode({"w": w})
    with pytest.raises(ConfigError):
        nnr.encode({"w": w}, codebook="on")


def test_float64_beyond_float32_is_refused() -> None:
    with pytest.raises(ConfigError):
        nnr.encode({"w": np.array([1e300, 1.0])})


@pytest.mark.parametrize("scale", [1e-30, 1e-6, 1.0, 1e6, 1e12])
def test_large_and_small_magnitudes_round_trip(scale: float) -> None:
    w = (F * scale).astype(np.float32)
    out = roundtrip({"w": w})
    assert close(out["w"], w, rel=2e-3)


def test_huge_values_are_coded_or_refused() -> None:
    w = np.array([3e38, -3e38, 1.0], np.float32)
    try:
        out = roundtrip({"w": w})
    except ConfigError:
        return
    assert np.all(np.isfinite(out["w"])) and close(out["w"], w, rel=0.5)


def test_float16_extremes_round_trip() -> None:
    w = np.array([65504, -65504, 6e-8, 0], np.float16)
    out = roundtrip({"w": w})
    assert out["w"].dtype == np.float32 and close(out["w"], w)


# --- shapes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (2, 0, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_empty_tensors_round_trip(shape, dtype) -> None:
    out = roundtrip({"e": np.zeros(shape, dtype)})
    assert out["e"].size == 0


@pytest.mark.parametrize("value", [np.float32(1.5), np.array(2.5, np.float32),
                                   np.array(-7, np.int32), 3.0])
def test_zero_dimensional_tensors_come_back_as_one_element(value) -> None:
    out = roundtrip({"s": value})
    assert out["s"].shape == (1,) and close(out["s"], np.reshape(value, (1,)))


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_empty_tensor_with_codebook(mode: str) -> None:
    assert roundtrip({"e": np.zeros((0, 4), np.float32)}, codebook=mode)["e"].size == 0


def test_many_dimensions_round_trip() -> None:
    w = np.linspace(-1, 1, 64, dtype=np.float32).reshape((2,) * 6)
    assert close(roundtrip({"w": w}, scan_order=1)["w"], w)


def test_empty_mapping_gives_an_empty_stream() -> None:
    assert nnr.decode(nnr.encode({})) == {}


# --- memory layout and byte order ---------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: np.arange(40, dtype=np.float32).reshape(8, 5)[::2, ::-1] / 40,
    lambda: np.asfortranarray(F),
    lambda: F.T,
    lambda: np.frombuffer(F.tobytes(), np.float32).reshape(3, 4),        # read-only
    lambda: np.broadcast_to(F[0], (5, 4)),                                  # zero strides
], ids=["strided", "fortran", "transposed", "readonly", "broadcast"])
def test_non_contiguous_arrays_round_trip(make) -> None:
    w = make()
    out = roundtrip({"w": w}, scan_order=2)
    assert close(out["w"], np.ascontiguousarray(w))


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">f2", "<f8"])
def test_big_endian_floats_round_trip(dtype: str) -> None:
    w = F.astype(dtype)
    assert np.dtype(dtype).byteorder in "<>=|"
    out = roundtrip({"w": w})
    assert out["w"].dtype == np.float32 and close(out["w"], F)


@pytest.mark.parametrize("dtype", [">i4", ">i2", ">u2", "<i8", "u1", "i1", "?"])
def test_integer_and_bool_tensors_are_lossless(dtype: str) -> None:
    v = (np.arange(-6, 6) % 2 if dtype == "?" else
         np.arange(12) if dtype[-2] == "u" or dtype == "u1" else np.arange(-6, 6))
    w = v.astype(dtype).reshape(3, 4)
    out = roundtrip({"i": w})
    assert out["i"].dtype == np.int32
    assert np.array_equal(out["i"], w.astype(np.int64))


@pytest.mark.parametrize("value", [2**31, -2**31 - 1, 2**40])
def test_integers_beyond_int32_are_refused(value: int) -> None:
    dtype = np.uint64 if value > 0 else np.int64
    with pytest.raises(ConfigError, match="int32"):
        nnr.encode({"i": np.array([value, 1], dtype)})


def test_int32_extremes_are_lossless() -> None:
    w = np.array([2**31 - 1, -2**31, 0, 1], np.int32)
    assert np.array_equal(roundtrip({"i": w})["i"], w)


# --- dtypes that are not numbers -----------------------------------------------------------------
@pytest.mark.parametrize("value", [
    np.ones(3, np.complex64), np.ones(3, np.complex128),
    np.array([1.0, "a"], dtype=object), np.array([1.0, 2.0], dtype=object),
    np.array(["ab", "c"]), np.array([b"ab"]),
    np.array(["2020-01-01"], dtype="datetime64[D]"), np.array([1], dtype="timedelta64[s]"),
    np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]), np.zeros(2, dtype="V4"),
    "abc", None, {"nested": 1},
], ids=["complex64", "complex128", "object-mixed", "object-floats", "str", "bytes", "datetime",
        "timedelta", "structured", "void", "python-str", "None", "dict"])
def test_unsupported_dtypes_are_refused(value) -> None:
    with pytest.raises(ConfigError):
        nnr.encode({"w": value})


# --- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [1, None, b"w", ("w",), 1.5, "", "a\0b", "\0", "\udc80"],
                         ids=["int", "None", "bytes", "tuple", "float", "empty", "nul-inside",
                              "nul", "lone-surrogate"])
def test_bad_names_are_refused(name) -> None:
    with pytest.raises(ConfigError):
        nnr.encode({name: F})


@pytest.mark.parametrize("name", ["x" * 5000, "ünï€😀", "layer.0/weight:0", " ", "a\nb"],
                         ids=["long", "unicode", "punctuation", "space", "newline"])
def test_unusual_names_round_trip(name: str) -> None:
    roundtrip({name: F, "other": F})


def test_non_mapping_input_is_refused() -> None:
    with pytest.raises(ConfigError):
        nnr.encode([("w", F)])


# --- every option on the awkward inputs ---------------------------------------------------------
@pytest.mark.parametrize("options", [
    {}, {"dq": False}, {"scan_order": 4},
    {"codebook": "on"},
    {"codebook": "auto"},
    {"profile": 0}, {"row_skip": True}, {"qp": -60, "qp_density": 3},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_awkward_inputs_under_every_option(options: dict) -> None:
    tensors = {
        "empty": np.zeros((0, 4), np.float32),
        "scalar": np.float32(0.75),
        "strided": np.arange(60, dtype=np.float32).reshape(6, 10)[:, ::3] / 60,
        "be": F.astype(">f4"),
        "zeros": np.zeros((70, 3), np.float32),
        "int": np.arange(-3, 3, dtype=">i2"),
    }
    out = roundtrip(tensors, **options)
    for name in ("strided", "be", "zeros"):
        assert close(out[name], np.ascontiguousarray(tensors[name]), rel=5e-2)
    assert np.array_equal(out["int"], tensors["int"].astype(np.int32))
