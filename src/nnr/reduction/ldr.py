"""Low-displacement-rank (Toeplitz-like) approximation, for comparison with low rank.

A square matrix M has displacement rank r under the Sylvester operator
``L[M] = Z_1 M - M Z_-1`` (Z_f: the down-shift with f in the top-right corner) when
``L[M] = G H^T`` with G, H of shape (b, r); then (Sindhwani et al., 2015)

    M = 1/2 sum_j Z_1(g_j) Z_-1(J h_j)

with Z_f(v) the f-circulant matrix whose first column is v and J the reversal. Toeplitz
matrices have displacement rank <= 2. A weight matrix (out, prod(rest)) is cut into square
b x b blocks (b = the smaller side, edges zero-padded); each block is approximated from the
truncated SVD of its displacement and then refined by minimising the Frobenius error
(L-BFGS, needs PyTorch; without it the SVD start is used). Parameters: 2 b r per block.

NNR has no syntax for this structure (the DC tool recomposes ``W = G H``), so it could only be
carried as ordinary tensors plus an out-of-band rule; it is measured in docs/reduction.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnr.errors import ConfigError

__all__ = ["ToeplitzLike", "toeplitz_like", "ldr_block", "displacement"]


def _shift(f: float, n: int) -> np.ndarray:
    z = np.zeros((n, n))
    z[1:, :-1] = np.eye(n - 1)
    z[0, -1] = f
    return z


def _fcirculant(v: np.ndarray, f: float) -> np.ndarray:
    """Z_f(v): column k is Z_f^k v (entries v[i-k], times f where i < k)."""
    n = v.shape[-1]
    i, k = np.arange(n)[:, None], np.arange(n)[None, :]
    sign = np.where(i >= k, 1.0, f)
    return v[..., (i - k) % n] * sign


def displacement(m: np.ndarray) -> np.ndarray:
    """``Z_1 M - M Z_-1`` of a square matrix."""
    n = m.shape[0]
    return _shift(1.0, n) @ m - m @ _shift(-1.0, n)


def ldr_block(g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The b x b matrix with displacement ``g @ h.T`` (g, h: (b, r))."""
    b = g.shape[0]
    out = np.zeros((b, b))
    for j in range(g.shape[1]):
        out += _fcirculant(g[:, j], 1.0) @ _fcirculant(h[::-1, j], -1.0)
    return 0.5 * out


@dataclass
class ToeplitzLike:
    """A (rows x cols) matrix as blocks of displacement rank r: ``g``, ``h`` of shape
    (row blocks, col blocks, b, r)."""

    rows: int
    cols: int
    g: np.ndarray
    h: np.ndarray

    @property
    def block(self) -> int:
        return int(self.g.shape[2])

    @property
    def rank(self) -> int:
        return int(self.g.shape[3])

    @property
    def parameters(self) -> int:
        return int(self.g.size + self.h.size)

    def reconstruct(self) -> np.ndarray:
        b = self.block
        nr, nc = self.g.shape[:2]
        full = np.zeros((nr * b, nc * b))
        for i in range(nr):
            for j in range(nc):
                full[i * b:(i + 1) * b, j * b:(j + 1) * b] = ldr_block(self.g[i, j], self.h[i, j])
        return full[:self.rows, :self.cols]


def _svd_start(block: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    u, s, vt = np.linalg.svd(displacement(block))
    root = np.sqrt(s[:rank])
    return u[:, :rank] * root, vt[:rank].T * root


def _refine(block: np.ndarray, g: np.ndarray, h: np.ndarray, steps: int):
    try:
        import torch
    except ImportError:
        return g, h
    b = block.shape[0]
    i, k = np.arange(b)[:, None], np.arange(b)[None, :]
    idx = torch.from_numpy(((i - k) % b).astype(np.int64))
    neg = torch.from_numpy(np.where(i >= k, 1.0, -1.0))
    target = torch.from_numpy(block)
    tg = torch.tensor(np.ascontiguousarray(g), requires_grad=True)
    th = torch.tensor(np.ascontiguousarray(h), requires_grad=True)
    opt = torch.optim.LBFGS([tg, th], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        circ = tg[idx]                                   # (b, b, r): Z_1(g_j)
        skew = th.flip(0)[idx] * neg[..., None]           # (b, b, r): Z_-1(J h_j)
        m = 0.5 * torch.einsum("ikr,kjr->ij", circ, skew)
        loss = ((m - target) ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return tg.detach().numpy(), th.detach().numpy()


def toeplitz_like(w: np.ndarray, rank: int, *, refine_steps: int = 100) -> ToeplitzLike:
    """Approximate ``w`` (viewed as (out, prod(rest))) by square blocks of displacement rank
    ``rank``."""
    a = np.asarray(w, np.float64)
    if a.ndim < 2:
        raise ConfigError("a low-displacement-rank approximation needs >= 2 dimensions")
    a = a.reshape(a.shape[0], -1)
    rows, cols = a.shape
    b = min(rows, cols)
    if not 1 <= rank <= b:
        raise ConfigError(f"displacement rank must be in 1..{b}, got {rank}")
    nr, nc = -(-rows // b), -(-cols // b)
    pad = np.zeros((nr * b, nc * b))
    pad[:rows, :cols] = a
    g = np.zeros((nr, nc, b, rank))
    h = np.zeros((nr, nc, b, rank))
    for i in range(nr):
        for j in range(nc):
            blk = pad[i * b:(i + 1) * b, j * b:(j + 1) * b]
            gi, hi = _svd_start(blk, rank)
            if refine_steps:
                gi, hi = _refine(blk, gi, hi, refine_steps)
            g[i, j], h[i, j] = gi, hi
    return ToeplitzLike(rows, cols, g.astype(np.float32), h.astype(np.float32))
