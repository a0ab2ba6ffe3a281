"""The CIFAR-10 CNN of the ``cifar-10-model`` package (Keras 2 HDF5), run without TensorFlow:
a torch port of its Sequential model, and an NNEF export of the same network."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

# (kind, layer name) of the Sequential model, in order (model_config of cnn_model.h5).
LAYERS = [("conv", "conv2d"), ("bn", "batch_normalization"),
          ("conv", "conv2d_1"), ("bn", "batch_normalization_1"), ("pool", 2),
          ("conv", "conv2d_2"), ("bn", "batch_normalization_2"),
          ("conv", "conv2d_3"), ("bn", "batch_normalization_3"), ("pool", 2),
          ("conv", "conv2d_4"), ("bn", "batch_normalization_4"),
          ("conv", "conv2d_5"), ("bn", "batch_normalization_5"),
          ("dense", "dense"), ("dense", "dense_1"), ("dense", "dense_2")]
EPS = 1e-3


def model_path() -> Path | None:
    spec = importlib.util.find_spec("cifar_10_model")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "trained_models" / "cnn_model.h5"


def weights(h5file) -> dict[str, dict[str, np.ndarray]]:
    """layer name -> {kernel, bias, gamma, beta, moving_mean, moving_variance}."""
    group = h5file["model_weights"]
    out = {}
    for _, name in LAYERS:
        if isinstance(name, str):
            layer = group[name]
            out[name] = {n.decode() if isinstance(n, bytes) else n: None
                         for n in layer.attrs["weight_names"]}
            out[name] = {k.split("/")[-1].split(":")[0]: np.asarray(layer[k]) for k in out[name]}
    return out


def forward(w: dict[str, dict[str, np.ndarray]], images: np.ndarray) -> np.ndarray:
    """Logits (after the last ReLU, as the model has it) of NHWC uint8-range images."""
    import torch
    import torch.nn.functional as F
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32))
    with torch.no_grad():
        for kind, name in LAYERS:
            if kind == "pool":
                x = F.max_pool2d(x, name)
                continue
            p = {k: torch.from_numpy(v) for k, v in w[name].items()}
            if kind == "conv":
                x = F.relu(F.conv2d(x, p["kernel"].permute(3, 2, 0, 1), p["bias"]))
            elif kind == "bn":
                x = F.batch_norm(x, p["moving_mean"], p["moving_variance"], p["gamma"],
                                 p["beta"], eps=EPS)
            else:
                x = F.relu(F.linear(x.flatten(1), p["kernel"].T, p["bias"]))
    return x.numpy()


def nnef_files(w: dict[str, dict[str, np.ndarray]]) -> dict[str, bytes]:
    """The network as an NNEF model (graph.nnef + .dat files, NCHW), written with nnr's own
    .dat writer."""
    from nnr.adapters.nnef import write_tensor
    lines, files, x, n = [], {}, "input", 0

    def var(label: str, array: np.ndarray) -> str:
        ident = label.replace("/", "_")
        lines.append(f"    {ident} = variable<scalar>(shape = {list(array.shape)}, "
                     f"label = '{label}');")
        files[f"{label}.dat"] = write_tensor(np.ascontiguousarray(array, np.float32))
        return ident
    for kind, name in LAYERS:
        n += 1
        y = f"t{n}"
        if kind == "pool":
            s = [1, 1, name, name]
            lines.append(f"    {y} = max_pool({x}, size = {s}, border = 'ignore', "
                         f"stride = {s});")
        elif kind == "conv":
            f_ = var(f"{name}/filter", w[name]["kernel"].transpose(3, 2, 0, 1))
            b = var(f"{name}/bias", w[name]["bias"][None, :])
            lines.append(f"    {y}c = conv({x}, {f_}, {b}, padding = [(0, 0), (0, 0)]);")
            lines.append(f"    {y} = relu({y}c);")
        elif kind == "bn":
            p = {k: var(f"{name}/{k}", v[None, :]) for k, v in w[name].items()}
            lines.append(f"    {y} = batch_normalization({x}, {p['moving_mean']}, "
                         f"{p['moving_variance']}, {p['beta']}, {p['gamma']}, epsilon = {EPS});")
        else:
            if name == "dense":
                lines.append(f"    {y}f = reshape({x}, shape = [0, -1]);")
                x = f"{y}f"
            f_ = var(f"{name}/filter", w[name]["kernel"].T)
            b = var(f"{name}/bias", w[name]["bias"][None, :])
            lines.append(f"    {y}l = linear({x}, {f_}, {b});")
            lines.append(f"    {y} = relu({y}l);")
        x = y
    graph = ["version 1.0;", "", "graph cifar10( input ) -> ( output )", "{",
             "    input = external<scalar>(shape = [1, 3, 32, 32]);", *lines,
             f"    output = copy({x});", "}", ""]
    files["graph.nnef"] = "\n".join(graph).encode()
    return files
