"""Micro-structured pruning, unification, the Toeplitz-like approximation and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from nnr.errors import ConfigError
from nnr.reduction import (FineTune, fine_tune_structured, fisher_diagonal, micro_prune,
                           toeplitz_like, unify)
from nnr.reduction.ldr import displacement, ldr_block
from nnr.reduction.microstructure import block_ids, block_scores, reshape_3d
from tests.reduction.conftest import full_loss, needs_torch, task_loss


def test_blocks_of_the_3d_view():
    assert reshape_3d((8, 4, 3, 3)) == (8, 4, 9) and reshape_3d((5, 7)) == (5, 7, 1)
    ids, n = block_ids((5, 4, 3, 3), (2, 2, None))
    assert n == 3 * 2 * 1 and ids.shape == (5, 4, 3, 3)
    assert len(np.unique(ids[:2, :2])) == 1 and ids[4, 3, 0, 0] == n - 1
    with pytest.raises(ConfigError):
        block_ids((4, 4), (2, 2))


def test_micro_prune_zeroes_the_weakest_blocks():
    w = np.ones((4, 4), np.float32)
    w[:2, :2] = 0.1
    out, masks = micro_prune({"w": w}, 0.25, block=(2, 2, None))
    assert np.all(out["w"][:2, :2] == 0) and np.count_nonzero(out["w"]) == 12
    assert masks["w"].sum() == 12
    fisher = {"w": np.where(np.arange(16).reshape(4, 4) >= 8, 1e-6, 1.0)}
    out, _ = micro_prune({"w": w}, 0.25, block=(2, 2, None), fisher=fisher)
    assert np.count_nonzero(out["w"][2:]) == 4         # the low-Fisher rows go first


def test_unified_blocks_share_one_magnitude_and_keep_signs(model):
    out, plan = unify(model, 0.5, block=(2, 2, None))
    w, u = out["conv2.weight"], plan.unified["conv2.weight"]
    ids = plan.ids["conv2.weight"]
    assert 0.4 < u.mean() < 0.6
    for b in np.unique(ids[u]):
        mags = np.abs(w[ids == b])
        assert np.allclose(mags, mags[0])
    assert np.all(np.sign(w[u]) == np.where(model["conv2.weight"][u] < 0, -1, 1))
    np.testing.assert_array_equal(w[~u], model["conv2.weight"][~u])
    scores = block_scores(model["conv2.weight"], (2, 2, None), mode="unify")
    assert scores.shape == (12,) and np.all(scores >= 0)


@needs_torch
def test_structured_fine_tuning_keeps_the_constraints(model):
    loss_fn = task_loss(model)
    fisher = fisher_diagonal(model, loss_fn, batches=2)
    assert set(fisher) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    pruned, masks = micro_prune(model, 0.3, fisher=fisher)
    unified, plan = unify(pruned, 0.3, names=["fc1.weight"], fisher=fisher)
    before = full_loss(model, unified)
    tuned, history = fine_tune_structured(unified, loss_fn, FineTune(steps=15, lr=3e-3),
                                          masks=masks, plan=plan)
    assert len(history) == 15 and full_loss(model, tuned) < before
    for n, m in masks.items():
        assert np.all(tuned[n][~m] == 0)
    w, ids, u = tuned["fc1.weight"], plan.ids["fc1.weight"], plan.unified["fc1.weight"]
    for b in np.unique(ids[u]):
        mags = np.abs(w[(ids == b) & u])
        assert np.allclose(mags, mags[0], rtol=1e-5)


def test_displacement_rank_formula_and_toeplitz():
    rng = np.random.default_rng(0)
    g, h = rng.normal(size=(9, 2)), rng.normal(size=(9, 2))
    np.testing.assert_allclose(displacement(ldr_block(g, h)), g @ h.T, atol=1e-12)
    c = rng.normal(size=17)
    toe = np.array([[c[i - j + 8] for j in range(9)] for i in range(9)])
    approx = toeplitz_like(toe, 2, refine_steps=0)
    np.testing.assert_allclose(approx.reconstruct(), toe, atol=1e-5)
    assert approx.parameters == 2 * 9 * 2


def test_toeplitz_like_rectangular_blocks():
    w = np.random.default_rng(1).normal(size=(4, 10)).astype(np.float32)
    approx = toeplitz_like(w, 4, refine_steps=0)          # full displacement rank: exact
    assert approx.g.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(approx.reconstruct(), w, atol=1e-4)
    with pytest.raises(ConfigError):
        toeplitz_like(w, 5)


def test_cli_round_trip(tmp_path, model):
    src = tmp_path / "m.npz"
    np.savez(src, **model)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "nnr.reduction", *map(str, args)],
                              capture_output=True, text=True)

    r = run("fold-bn", src, "-o", tmp_path / "f.npz", "--blocks", tmp_path / "b.json")
    assert r.returncode == 0, r.stderr
    blocks = json.loads((tmp_path / "b.json").read_text())
    assert blocks["conv1.weight"]["weight.ls"] == "conv1.weight_scaling"
    assert run("sparsify", src, "-o", tmp_path / "s.npz", "--ratio", 0.5).returncode == 0
    with np.load(tmp_path / "s.npz") as z:
        assert np.count_nonzero(z["fc1.weight"] == 0) == 60
    assert run("unify", src, "-o", tmp_path / "u.npz", "--ratio", .5, "--block",
               "2,2,0").returncode == 0
    r = run("sparsify", src, "-o", tmp_path / "x.npz", "--ratio", 2)
    assert r.returncode == 1 and r.stderr.startswith("python -m nnr.reduction: error:")
    assert not (tmp_path / "x.npz").exists()
