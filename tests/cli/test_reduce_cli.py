"""``nnr reduce`` (the data-free reduction tools on model files) and the reduction flags of
``nnr encode`` (``--low-rank``, ``--performance-maps``, ``--blocks BLOCKS.json``), run
in-process on the trained Fashion-MNIST CNN of benchmarks/eval (conv 16 - bn - conv 32 - bn -
fc 128 - fc 10, 207,066 parameters)."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

import nnr
from nnr.cli.main import main
from nnr.reduction import recompose
from nnr.reduction.microstructure import block_ids
from tests.adapters.conftest import need
from tests.conftest import CliResult

REPO = Path(__file__).resolve().parents[2]
FASHION = REPO / "benchmarks" / "eval" / "fashion_cnn.npz"
DATA_DIR = Path(os.environ.get("NNR_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
WEIGHTS = ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight")
EPS = 1e-5
GROUPS = [
    {"producer": "conv1.weight",
     "members": ["bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                 {"name": "conv2.weight", "axis": 1}],
     "bn": {"gamma": "bn1.weight", "beta": "bn1.bias", "mean": "bn1.running_mean",
            "var": "bn1.running_var", "eps": EPS}},
    {"producer": "conv2.weight",
     "members": ["bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var",
                 {"name": "fc1.weight", "axis": 1, "repeat": 49}]},
    {"producer": "fc1.weight", "members": ["fc1.bias", {"name": "fc2.weight", "axis": 1}]},
]
#: The --eval script: top-1 of the CNN (numpy forward pass below) on 500 test images.
EVAL_SCRIPT = f"""import importlib.util
_spec = importlib.util.spec_from_file_location("fashion_eval", {str(Path(__file__))!r})
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
evaluate = _module.evaluate
"""


# ------------------------------------------------------------------------------ the model

def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def fashion() -> dict[str, np.ndarray]:
    return _load(FASHION)


def _conv3x3(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """3 x 3 convolution, padding 1, as one matrix product."""
    n, c, h, wd = x.shape
    win = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, c * 9)
    out = cols @ w.reshape(w.shape[0], -1).T.astype(np.float32)
    return out.reshape(n, h, wd, -1).transpose(0, 3, 1, 2)


def _pool(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _affine(h: np.ndarray, t, weight: str, bn: str | None, bias: str) -> np.ndarray:
    """What follows a layer's product: its local scaling, then its batch norm or bias
    (folded models have ``<w>_scaling`` and a bias instead of the batch norm)."""
    def per_channel(v):
        return np.asarray(v, np.float32).reshape((1, -1) + (1,) * (h.ndim - 2))
    if weight + "_scaling" in t:
        h = h * per_channel(t[weight + "_scaling"])
    if bn is not None and bn + ".running_mean" in t:
        scale = t[bn + ".weight"] / np.sqrt(t[bn + ".running_var"] + EPS)
        return (h - per_channel(t[bn + ".running_mean"])) * per_channel(scale) \
            + per_channel(t[bn + ".bias"])
    return h + per_channel(t[bias]) if bias in t else h


def forward(t, x: np.ndarray) -> np.ndarray:
    """Logits of the Fashion-MNIST CNN (benchmarks/eval/fashion_cnn.py) for images x
    (N, 1, 28, 28), from the tensors of the model, folded or not, pruned or not."""
    h = _affine(_conv3x3(x, t["conv1.weight"]), t, "conv1.weight", "bn1", "conv1.weight.bias")
    h = _pool(np.maximum(h, 0))
    h = _affine(_conv3x3(h, t["conv2.weight"]), t, "conv2.weight", "bn2", "conv2.weight.bias")
    h = _pool(np.maximum(h, 0)).reshape(len(x), -1)
    h = np.maximum(_affine(h @ t["fc1.weight"].T, t, "fc1.weight", None, "fc1.bias"), 0)
    return _affine(h @ t["fc2.weight"].T, t, "fc2.weight", None, "fc2.bias")


_DATA: dict[str, np.ndarray] = {}


def fashion_images(n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """The first n Fashion-MNIST test images (normalised as in training) and labels."""
    if "x" not in _DATA:
        path = DATA_DIR / "t10k-images-idx3-ubyte.gz"
        if not path.exists():
            pytest.skip(f"Fashion-MNIST not found in {DATA_DIR} (apt-get install "
                        "dataset-fashion-mnist)")
        with gzip.open(path) as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
        with gzip.open(DATA_DIR / "t10k-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
        _DATA["x"] = ((x.astype(np.float32) / 255 - 0.2860) / 0.3530)[:, None]
        _DATA["y"] = y
    return _DATA["x"], _DATA["y"]




def evaluate(tensors) -> float:
    x, y = fashion_images()
    return float(np.mean(forward(tensors, x).argmax(axis=1) == y))


def _random_images(n: int = 64) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(n, 1, 28, 28)).astype(np.float32)


# ----------------------------------------------------------------------------- the command

@pytest.fixture
def run(capsys, monkeypatch):
    """``run("reduce", "sparsify", ...)`` -> CliResult: the ``nnr`` command, in-process."""
    monkeypatch.delenv("NNR_DEBUG", raising=False)

    def call(*args: object) -> CliResult:
        argv = [str(a) for a in args]
        code = main(argv)
        out, err = capsys.readouterr()
        return CliResult(argv, code, out, err, out.encode())
    return call


def _zeros(a: np.ndarray) -> float:
    return float(np.mean(a == 0))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------------- tools

def test_sparsify_per_layer_into_a_state_dict(run, tmp_path, fashion):
    torch = need("torch", "'nnr[frameworks]'")
    out = tmp_path / "sparse.pt"
    r = run("reduce", "sparsify", FASHION, "-o", out, "--ratio", "0.5")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout == (f"wrote {out}: zeroed 103,368 of 206,736 weights in 4 tensors, "
                        "sparsity 0.0% -> 50.0%\n")
    state = torch.load(out, weights_only=True)
    assert list(state) == list(fashion)
    for name in WEIGHTS:
        w = state[name].numpy()
        assert abs(_zeros(w) - 0.5) <= 0.5 / w.size + 1e-9, name
        kept = w != 0               # the largest magnitudes survive, unchanged
        np.testing.assert_array_equal(w[kept], fashion[name][kept])
        assert np.abs(fashion[name][~kept]).max() <= np.abs(fashion[name][kept]).min()
    for name in set(fashion) - set(WEIGHTS):
        np.testing.assert_array_equal(state[name].numpy(), fashion[name])


def test_sparsify_global_ranks_all_weights_together(run, tmp_path, fashion):
    out = tmp_path / "global.safetensors"
    r = run("reduce", "sparsify", FASHION, "-o", out, "--ratio", "0.7", "--scope", "global")
    assert r.returncode == 0, r.stderr
    assert "sparsity 0.0% -> 70.0%" in r.stdout
    t = nnr.adapters.load(out).tensors
    total = sum(t[n].size for n in WEIGHTS)
    assert abs(sum(np.sum(t[n] == 0) for n in WEIGHTS) / total - 0.7) < 1e-4
    per_tensor = {n: _zeros(t[n]) for n in WEIGHTS}
    assert max(per_tensor.values()) - min(per_tensor.values()) > 0.05   # not 70 % each
    # one threshold in units of each tensor's RMS separates zeros from kept weights
    rms = {n: np.sqrt(np.mean(fashion[n].astype(np.float64) ** 2)) for n in WEIGHTS}
    cut_zero = max(np.abs(fashion[n][t[n] == 0]).max() / rms[n] for n in WEIGHTS)
    cut_kept = min(np.abs(fashion[n][t[n] != 0]).min() / rms[n] for n in WEIGHTS)
    assert cut_zero <= cut_kept


def test_sparsify_keeps_an_onnx_graph_and_structural_tools_refuse_it(run, tmp_path):
    onnx = need("onnx", "'nnr[frameworks]'")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(16, 8)).astype(np.float32)
    w2 = rng.normal(size=(4, 16)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1)], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(np.zeros(16, np.float32), "b1")])
    src = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), src)
    out = tmp_path / "sparse.onnx"
    r = run("reduce", "sparsify", src, "-o", out, "--ratio", "0.25")
    assert r.returncode == 0, r.stderr
    assert "zeroed 48 of 192 weights in 2 tensors" in r.stdout
    model = onnx.load(out)
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Relu", "Gemm"]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert _zeros(inits["w1"]) == 0.25 and _zeros(inits["w2"]) == 0.25
    ort = need("onnxruntime", "'nnr[frameworks]'")
    x = rng.normal(size=(2, 8)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(got, np.maximum(x @ inits["w1"].T, 0) @ inits["w2"].T,
                               rtol=1e-5, atol=1e-5)
    r = run("reduce", "decompose", src, "-o", tmp_path / "gh.onnx", "--tolerance", "0.9")
    assert r.returncode == 1
    line = r.error_line()
    assert "decompose adds w1_G" in line and "write .npz, .safetensors or .pt" in line
    assert sorted(os.listdir(tmp_path)) == ["mlp.onnx", "sparse.onnx"]
    r = run("reduce", "decompose", src, "-o", tmp_path / "gh.npz", "--tolerance", "0.9")
    assert r.returncode == 0, r.stderr            # a tensor file holds them


def test_fold_bn_then_local_scaling_feed_encode_blocks(run, tmp_path, fashion):
    folded, blocks = tmp_path / "folded.safetensors", tmp_path / "blocks.json"
    r = run("reduce", "fold-bn", FASHION, "-o", folded, "--blocks", blocks)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {folded}: folded 2 batch norms (conv1.weight, "
                               "conv2.weight) into <w>_scaling and the bias: 14 -> 10 tensors")
    t = nnr.adapters.load(folded).tensors
    assert not any(n.startswith("bn") for n in t)
    assert json.loads(blocks.read_text()) == {
        "conv1.weight": {"weight.ls": "conv1.weight_scaling", "bias": "conv1.weight.bias"},
        "conv2.weight": {"weight.ls": "conv2.weight_scaling", "bias": "conv2.weight.bias"}}
    x = _random_images()
    ref = forward(fashion, x)
    assert np.max(np.abs(forward(t, x) - ref)) < 1e-3 * np.max(np.abs(ref))  # same function

    # the folded model with its blocks: LS | BI in one NNR_PT_BLOCK unit per conv
    stream = tmp_path / "folded.nnr"
    r = run("encode", folded, "-o", stream, "--qp", "-30", "--blocks", blocks)
    assert r.returncode == 0, r.stderr
    info = nnr.inspect(stream.read_bytes())
    assert "block" in info.tools
    ndu = {ti.name: ti.ndu_index for ti in info.tensors}
    assert ndu["conv1.weight"] == ndu["conv1.weight_scaling"] == ndu["conv1.weight.bias"]
    assert ndu["conv2.weight"] == ndu["conv2.weight_scaling"] != ndu["conv1.weight"]

    # local scaling for qp -30 extends the same blocks file
    scaled = tmp_path / "scaled.npz"
    r = run("reduce", "local-scaling", folded, "-o", scaled, "--qp", "-30", "--blocks", blocks)
    assert r.returncode == 0, r.stderr
    assert "least-squares <w>_scaling for 4 weights at qp -30" in r.stdout
    b = json.loads(blocks.read_text())
    assert b["conv1.weight"] == {"weight.ls": "conv1.weight_scaling",
                                 "bias": "conv1.weight.bias"}
    assert b["fc1.weight"] == {"weight.ls": "fc1.weight_scaling"}
    s = _load(scaled)
    np.testing.assert_allclose(s["conv1.weight_scaling"] / t["conv1.weight_scaling"], 1,
                               atol=0.05)        # alpha kept, times a scale close to 1
    stream = tmp_path / "scaled.nnr"
    r = run("encode", scaled, "-o", stream, "--qp", "-30", "--blocks", blocks)
    assert r.returncode == 0, r.stderr
    decoded = nnr.decode(stream.read_bytes())
    plain = nnr.decode(nnr.encode({n: fashion[n] for n in WEIGHTS}, qp=-30))
    for n in ("fc1.weight", "fc2.weight"):        # the scales fit the coded weights
        w_ls = decoded[n] * decoded[n + "_scaling"][:, None]
        assert _rel(w_ls, fashion[n]) < _rel(plain[n], fashion[n])


def test_micro_prune_zeroes_whole_blocks(run, tmp_path, fashion):
    out = tmp_path / "micro.npz"
    r = run("reduce", "micro-prune", FASHION, "-o", out, "--ratio", "0.3", "--block", "2,2,0")
    assert r.returncode == 0, r.stderr
    t = _load(out)
    chosen = total = 0
    for name in WEIGHTS:
        ids, nb = block_ids(t[name].shape, (2, 2, None))
        dead = np.bincount(ids.ravel(), weights=(t[name] == 0).ravel(), minlength=nb)
        size = np.bincount(ids.ravel(), minlength=nb)
        gone = dead == size
        assert np.all((dead == 0) | gone), name                # all or nothing per block
        assert abs(gone.mean() - 0.3) <= 0.5 / nb, name
        chosen, total = chosen + int(gone.sum()), total + nb
        np.testing.assert_array_equal(t[name][t[name] != 0], fashion[name][t[name] != 0])
    assert f"pruned {chosen:,} of {total:,} blocks of 2x2xall" in r.stdout


def test_unify_gives_blocks_one_magnitude(run, tmp_path, fashion):
    out = tmp_path / "unified.npz"
    r = run("reduce", "unify", FASHION, "-o", out, "--ratio", "0.5", "--block", "4,4,0")
    assert r.returncode == 0, r.stderr
    assert "blocks of 4x4xall" in r.stdout and "in 4 tensors" in r.stdout
    w, w0 = _load(out)["conv2.weight"], fashion["conv2.weight"]
    ids, nb = block_ids(w.shape, (4, 4, None))
    changed = np.unique(ids[w != w0])
    assert abs(len(changed) / nb - 0.5) <= 1 / nb
    for b in changed:
        mags = np.abs(w[ids == b])
        np.testing.assert_allclose(mags, mags[0], rtol=1e-6)
    assert np.all(np.sign(w) == np.where(w0 < 0, -1, 1))


def test_decompose_within_the_tolerance(run, tmp_path, fashion):
    out = tmp_path / "gh.npz"
    r = run("reduce", "decompose", FASHION, "-o", out, "--tolerance", "0.2")
    assert r.returncode == 0, r.stderr
    t = _load(out)
    rank = t["fc1.weight_G"].shape[1]
    assert r.stdout == (f"wrote {out}: decomposed 1 of 4 weights into <w>_G, <w>_H "
                        f"(fc1.weight rank {rank}): 207,066 -> "
                        f"{207_066 - 128 * 1568 + rank * (128 + 1568):,} parameters\n")
    assert "fc1.weight" not in t and t["fc1.weight_H"].shape == (rank, 1568)
    assert list(t).index("fc1.weight_G") == list(fashion).index("fc1.weight")
    assert _rel(recompose(t["fc1.weight_G"], t["fc1.weight_H"], (128, 1568)),
                fashion["fc1.weight"]) <= 0.2
    for name in ("conv1.weight", "conv2.weight", "fc2.weight"):   # full rank pays nothing
        np.testing.assert_array_equal(t[name], fashion[name])


def test_prune_channels_gives_a_smaller_model_that_runs(run, tmp_path, fashion):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps(GROUPS))
    out = tmp_path / "small.npz"
    r = run("reduce", "prune-channels", FASHION, "-o", out, "--groups", groups,
            "--ratio", "0.5")
    assert r.returncode == 0, r.stderr
    t = _load(out)
    assert t["conv1.weight"].shape == (8, 1, 3, 3) and t["bn1.running_var"].shape == (8,)
    assert t["conv2.weight"].shape == (16, 8, 3, 3) and t["fc1.weight"].shape == (64, 784)
    assert t["fc2.weight"].shape == (10, 64) and t["fc2.bias"].shape == (10,)
    after = sum(a.size for a in t.values())
    assert r.stdout == (f"wrote {out}: removed 88 of 176 channels in 3 groups: 207,066 -> "
                        f"{after:,} parameters (-{1 - after / 207_066:.1%})\n")
    # every kept filter is one of the original filters, and the model still runs
    rows = {tuple(np.round(f.ravel(), 6)) for f in fashion["conv1.weight"]}
    assert all(tuple(np.round(f.ravel(), 6)) in rows for f in t["conv1.weight"])
    assert forward(t, _random_images(4)).shape == (4, 10)


def test_python_m_nnr_reduction_is_the_same_command(capsys, tmp_path):
    from nnr.cli.reduce import alias_main
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert alias_main(["unify", str(FASHION), "-o", str(a), "--ratio", "0.3"]) == 0
    assert main(["reduce", "unify", str(FASHION), "-o", str(b), "--ratio", "0.3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(":", 1)[1] == out[1].split(":", 1)[1]
    ta, tb = _load(a), _load(b)
    assert list(ta) == list(tb) and all(np.array_equal(ta[k], tb[k]) for k in ta)
    assert alias_main(["decompose", str(FASHION), "-o", str(tmp_path / "c.npz"),
                       "--tolerance", "1.5"]) == 1
    err = capsys.readouterr().err
    assert err == ("python -m nnr.reduction: error: ConfigError: --tolerance must be in "
                   "[0, 1), got 1.5\n")


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("args, status, message", [
    (["sparsify", FASHION, "--ratio", "1.5"], 1, "ConfigError: --ratio must be in [0, 1]"),
    (["sparsify", FASHION, "--ratio", "0.5", "--threshold", "1"], 2, "not allowed with"),
    (["sparsify", FASHION, "--threshold", "-1"], 1, "--threshold must be >= 0"),
    (["micro-prune", FASHION, "--ratio", "0.3", "--block", "2,2"], 2, "three integers"),
    (["decompose", FASHION, "--tolerance", "1"], 1, "--tolerance must be in [0, 1)"),
    (["local-scaling", FASHION, "--qp", "500"], 1, "ConfigError: qp 500 outside"),
    (["prune-channels", FASHION, "--ratio", "0.5", "--groups", "{groups}"], 1,
     "a member is a tensor name"),
    (["prune-channels", FASHION, "--ratio", "0.5", "--groups", "{missing}"], 1,
     "No such file or directory"),
    (["sparsify", "{missing}", "--ratio", "0.5"], 1, "cannot read"),
    (["sparsify", "{text}", "--ratio", "0.5"], 1, "unsupported tensor file type '.txt'"),
    (["fold-bn", "{nobn}"], 1, "fold-bn: no batch norm follows a weight"),
    (["fold-bn", FASHION, "--blocks", "{nodir}"], 1, "cannot write"),
    (["nope", FASHION], 2, "invalid choice"),
], ids=["ratio", "ratio-and-threshold", "threshold", "block", "tolerance", "qp", "groups",
        "groups-missing", "input-missing", "input-type", "no-bn", "blocks-dir", "tool"])
def test_bad_input_one_line_and_no_output(run, tmp_path, args, status, message):
    bad_groups = tmp_path / "groups.json"
    bad_groups.write_text(json.dumps([{"producer": "conv1.weight", "members": [{"axis": 1}]}]))
    (tmp_path / "model.txt").write_text("not a model")
    np.savez(tmp_path / "nobn.npz", w=np.ones((4, 4), np.float32))
    before = set(os.listdir(tmp_path))
    subst = {"{groups}": bad_groups, "{missing}": tmp_path / "absent.npz",
             "{text}": tmp_path / "model.txt", "{nobn}": tmp_path / "nobn.npz",
             "{nodir}": tmp_path / "no" / "blocks.json"}
    argv = [subst.get(a, a) if isinstance(a, str) else a for a in args]
    out = tmp_path / "out.npz"
    r = run("reduce", *argv, "-o", out)
    assert r.returncode == status, (r.stdout, r.stderr)
    assert message in r.error_line()
    assert r.stdout == ""
    assert set(os.listdir(tmp_path)) == before          # no output, no temporary file


def test_unsupported_output_and_unwritable_directory(run, tmp_path):
    r = run("reduce", "sparsify", FASHION, "-o", tmp_path / "out.bin", "--ratio", "0.5")
    assert r.returncode == 1 and "unsupported model file type '.bin'" in r.error_line()
    r = run("reduce", "sparsify", FASHION, "-o", tmp_path / "no" / "out.npz", "--ratio", "0.5")
    assert r.returncode == 1 and "cannot write" in r.error_line()
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------ nnr encode flags

def test_encode_low_rank_recomposes_within_the_tolerance(run, tmp_path, fashion):
    stream = tmp_path / "lr.nnr"
    r = run("encode", FASHION, "-o", stream, "--low-rank", "0.2", "--qp", "-40")
    assert r.returncode == 0, r.stderr
    plain = nnr.encode(fashion, qp=-40)
    assert stream.stat().st_size < len(plain)
    r = run("info", stream, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert "decomposition" in info["tools"]
    shapes = {t["name"]: t["shape"] for t in info["tensors"]}
    rank = shapes["fc1.weight_G"][1]
    assert shapes["fc1.weight_H"] == [rank, 1568] and rank < 128 * 1568 // (128 + 1568)
    r = run("info", stream)
    assert "decomposition" in r.stdout.splitlines()[1] and "fc1.weight_H" in r.stdout
    out = tmp_path / "lr.npz"
    r = run("decode", stream, "-o", out)
    assert r.returncode == 0, r.stderr
    t = _load(out)
    assert list(t) == list(fashion)                      # W recomposed, in its place
    assert _rel(t["fc1.weight"], fashion["fc1.weight"]) <= 0.2 + 0.01   # + quantization
    r = run("verify", stream, "--against", FASHION, "--max-abs-error", "0.2")
    assert r.returncode == 0, r.stdout


def test_encode_low_rank_of_a_state_dict_decodes_to_the_model(run, tmp_path, fashion):
    torch = need("torch", "'nnr[frameworks]'")
    src = tmp_path / "model.pt"
    torch.save({k: torch.from_numpy(v) for k, v in fashion.items()}, src)
    stream, out = tmp_path / "lr.nnr", tmp_path / "back.pt"
    r = run("encode", src, "-o", stream, "--low-rank", "0.1", "--blocks", "auto")
    assert r.returncode == 0, r.stderr
    weight_row = next(line for line in r.stdout.splitlines() if line.split()[0] == "weight")
    assert int(weight_row.split()[3]) > 0.9 * stream.stat().st_size   # G/H bytes count
    r = run("decode", stream, "-o", out)
    assert r.returncode == 0, r.stderr
    back = torch.load(out, weights_only=True)
    assert {k: tuple(v.shape) for k, v in back.items()} == \
        {k: v.shape for k, v in fashion.items()}
    assert _rel(back["fc1.weight"].numpy(), fashion["fc1.weight"]) <= 0.1 + 0.01


def test_encode_low_rank_rejects_what_it_cannot_do(run, tmp_path):
    for extra, message in ((["--low-rank", "1"], "low_rank tolerances must be numbers in [0, 1)"),
                           (["--low-rank", "0.1", "--size", "20000"], "--low-rank cannot be "
                            "combined with --max-drop or --size"),
                           (["--low-rank", "0.1", "--lossless"], "raw_float"),
                           (["--low-rank", "0.1", "--stream"], "--stream codes")):
        r = run("encode", FASHION, "-o", tmp_path / "x.nnr", *extra)
        assert r.returncode == 1, extra
        assert message in r.error_line()
    assert os.listdir(tmp_path) == []


def test_encode_performance_maps(run, tmp_path, fashion):
    fashion_images()                                     # skip without the data set
    script, groups = tmp_path / "eval.py", tmp_path / "groups.json"
    script.write_text(EVAL_SCRIPT)
    groups.write_text(json.dumps(GROUPS))
    stream = tmp_path / "maps.nnr"
    r = run("encode", FASHION, "-o", stream, "--qp", "-32", "--performance-maps",
            "--eval", script, "--map-levels", "sparsification=0.5,1.5",
            "--map-levels", "pruning=0.5", "--groups", groups,
            "--map-levels", "decomposition=0.3", "--metric", "top1")
    assert r.returncode == 0, r.stderr
    assert "performance maps: top1" in r.stderr and "4 levels" in r.stderr
    maps = nnr.inspect(stream.read_bytes()).performance_maps
    coded = nnr.decode(nnr.encode(fashion, qp=-32))
    reference = evaluate(coded)
    assert reference > 0.8                            # the trained model, on real images
    assert maps["metric"] == "top1"
    assert maps["validation_set_performance"] == pytest.approx(reference, abs=1e-6)
    sp = maps["sparsification"]
    assert [e["threshold"] for e in sp] == [0.5, 1.5]
    assert 1 > sp[0]["non_zero_ratio"] > sp[1]["non_zero_ratio"] > 0
    assert sp[1]["accuracy"] < reference              # zeroing |w| < 1.5 RMS hurts
    (pr,) = maps["pruning"]
    assert pr["pruning_ratio"] == pytest.approx(1 - 52_210 / 207_066, abs=1e-6)
    (dc,) = maps["decomposition"]
    assert dc["mse_threshold"] == pytest.approx(0.09) and 0 < dc["nn_reduction_ratio"] < 1
    assert all(0 <= e["accuracy"] <= 1 for m in ("sparsification", "pruning", "decomposition")
               for e in maps[m])
    assert "unification" not in maps                 # only the maps asked for
    r = run("info", stream)
    text = r.stdout.split("performance maps")[1]
    assert text.startswith(f" (top1 {reference:.4g} unreduced):")
    assert "|w| < 1.5 RMS" in text and "of the parameters removed" in text
    assert "performance_maps" in r.stdout.splitlines()[1]
    # the maps cost nothing in the tensors: the same NDUs as without them
    same = nnr.encode(fashion, qp=-32)
    assert nnr.decode(stream.read_bytes()).keys() == nnr.decode(same).keys()


def test_performance_maps_default_levels_and_max_drop_share_the_script(run, tmp_path):
    rng = np.random.default_rng(2)
    m = {"l1.weight": rng.standard_normal((64, 32)).astype(np.float32) * 0.2,
         "l1.bias": rng.standard_normal(64).astype(np.float32) * 0.05,
         "l2.weight": rng.standard_normal((10, 64)).astype(np.float32) * 0.3}
    np.savez(tmp_path / "m.npz", **m)
    script = tmp_path / "ev.py"
    script.write_text(
        "import numpy as np\n"
        "X = np.random.default_rng(0).standard_normal((300, 32)).astype(np.float32)\n"
        "CALLS = []\n"
        "def _out(t):\n"
        "    return (np.maximum(X @ t['l1.weight'].T + t['l1.bias'], 0) @ t['l2.weight'].T)"
        ".argmax(1)\n"
        "REF = None\n"
        "def evaluate(t):\n"
        "    global REF\n"
        "    CALLS.append(1)\n"
        "    if REF is None:\n"
        "        REF = _out(t)\n"
        "    return float(np.mean(_out(t) == REF))\n")
    stream = tmp_path / "m.nnr"
    r = run("encode", tmp_path / "m.npz", "-o", stream, "--max-drop", "2%", "--eval", script,
            "--performance-maps")
    assert r.returncode == 0, r.stderr
    assert "search: metric" in r.stderr and "8 levels" in r.stderr
    maps = nnr.inspect(stream.read_bytes()).performance_maps
    assert [len(maps[k]) for k in ("sparsification", "unification", "decomposition")] \
        == [3, 2, 3]
    assert maps["validation_set_performance"] >= 0.98     # the searched stream, vs the original


@pytest.mark.parametrize("extra, status, message", [
    (["--performance-maps"], 1, "--performance-maps needs --eval SCRIPT.py"),
    (["--map-levels", "decomposition=0.1"], 1, "--map-levels needs --performance-maps"),
    (["--metric", "top5"], 1, "--metric needs --performance-maps"),
    (["--eval", "{script}"], 1, "--eval needs --max-drop or --performance-maps"),
    (["--performance-maps", "--eval", "{script}", "--map-levels", "pruning=0.5"], 1,
     "needs --groups GROUPS.json"),
    (["--performance-maps", "--eval", "{script}", "--map-levels", "decomposition=1"], 2,
     "decomposition levels must be in [0, 1)"),
    (["--performance-maps", "--eval", "{script}", "--map-levels", "speed=1"], 2,
     "TOOL one of sparsification, pruning, unification, decomposition"),
    (["--performance-maps", "--eval", "{broken}", "--map-levels", "sparsification=1"], 1,
     "evaluate() raised ZeroDivisionError"),
    (["--blocks", "{blocks}"], 1, "blocks must be a JSON object"),
    (["--blocks", "{absent}"], 1, "No such file or directory"),
], ids=["maps-no-eval", "levels-no-maps", "metric-no-maps", "eval-alone", "pruning-no-groups",
        "bad-level", "bad-tool", "eval-raises", "blocks-bad", "blocks-missing"])
def test_encode_reduction_flag_errors(run, tmp_path, extra, status, message):
    (tmp_path / "ev.py").write_text("def evaluate(t):\n    return 1.0\n")
    (tmp_path / "broken.py").write_text("def evaluate(t):\n    return 1 / 0\n")
    (tmp_path / "blocks.json").write_text('["conv1.weight"]')
    subst = {"{script}": tmp_path / "ev.py", "{broken}": tmp_path / "broken.py",
             "{blocks}": tmp_path / "blocks.json", "{absent}": tmp_path / "absent.json"}
    before = set(os.listdir(tmp_path))
    r = run("encode", FASHION, "-o", tmp_path / "x.nnr", *[subst.get(a, a) for a in extra])
    assert r.returncode == status, (r.stdout, r.stderr)
    assert message in r.error_line()
    assert set(os.listdir(tmp_path)) == before
