#!/usr/bin/python3
"""Reference loss and gradients of a tiny GPT (include/xoptim/train/gpt.hpp), from torch.

The model is written with torch's own modules and ops, in float64, as nanoGPT's GPT
(model.py of karpathy/nanoGPT) with ReLU^2 in place of GELU and a bias on every linear:

    x = wte(ids) + wpe(arange(T))
    per layer:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
        attn: q, k, v = c_attn(x).split(d); per head softmax(q k^T / sqrt(hd), causal) v;
              c_proj of the heads side by side
        mlp:  c_proj(relu(c_fc(x)) ** 2)
    logits = ln_f(x) @ W^T, W = lm_head.weight (or wte.weight when tied)
    loss = cross_entropy(logits, targets), the mean over all positions

Parameter k (in the order of gpt::params(): tok_embed, pos_embed, per layer ln1.weight,
ln1.bias, attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias, ln2.weight,
ln2.bias, mlp.fc.weight, mlp.fc.bias, mlp.proj.weight, mlp.proj.bias; ln_f.weight,
ln_f.bias; head.weight unless tied) is set to 0.5 * u(seed * 1000 + k, 0, i) for element
i, except layer-norm weights: 1 + 0.5 * u(...). u is tests/reference/generate.py's hash
(xoptim_test::u in tests/support/reference.hpp).

Run from anywhere:

    /usr/bin/python3 tests/reference/generate_gpt.py

Writes tests/reference/gpt.json, read by tests/test_transformer_layers.cpp:

    {"generator": ..., "torch": str,
     "cases": [{"name": str, "vocab", "context", "layers", "d_model", "heads": int,
                "tied": bool, "seed": int, "batch": int, "length": int,
                "ids": [int], "targets": [int], "loss": float,
                "params": [{"name": str, "shape": [int], "grad": [float]}]}]}

Floats are repr() of float64 values: exact. The output is deterministic.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from generate import u  # noqa: E402  (the inputs' hash, shared with the other references)


def param_names(layers, tied):
    names = ["tok_embed.weight", "pos_embed.weight"]
    for l in range(layers):
        for part in ["ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                     "attn.proj.bias", "ln2.weight", "ln2.bias", "mlp.fc.weight", "mlp.fc.bias",
                     "mlp.proj.weight", "mlp.proj.bias"]:
            names.append("layers.%d.%s" % (l, part))
    names += ["ln_f.weight", "ln_f.bias"]
    if not tied:
        names.append("head.weight")
    return names


class Block(torch.nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = torch.nn.LayerNorm(d)
        self.c_attn = torch.nn.Linear(d, 3 * d)
        self.attn_proj = torch.nn.Linear(d, d)
        self.ln_2 = torch.nn.LayerNorm(d)
        self.c_fc = torch.nn.Linear(d, 4 * d)
        self.mlp_proj = torch.nn.Linear(4 * d, d)

    def attn(self, x):
        B, T, C = x.shape
        hd = C // self.heads
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, hd).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.attn_proj(y)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(torch.relu(self.c_fc(self.ln_2(x))) ** 2)

    def ordered(self):
        return [self.ln_1.weight, self.ln_1.bias, self.c_attn.weight, self.c_attn.bias, self.attn_proj.weight,
                self.attn_proj.bias, self.ln_2.weight, self.ln_2.bias, self.c_fc.weight, self.c_fc.bias,
                self.mlp_proj.weight, self.mlp_proj.bias]


def case(name, vocab, context, layers, d, heads, tied, seed, batch, length):
    wte = torch.nn.Embedding(vocab, d)
    wpe = torch.nn.Embedding(context, d)
    blocks = [Block(d, heads) for _ in range(layers)]
    ln_f = torch.nn.LayerNorm(d)
    lm_head = torch.nn.Linear(d, vocab, bias=False)
    params = [wte.weight, wpe.weight] + [p for b in blocks for p in b.ordered()] + [ln_f.weight, ln_f.bias]
    if not tied:
        params.append(lm_head.weight)
    names = param_names(layers, tied)
    assert len(names) == len(params)
    with torch.no_grad():
        for k, (n, p) in enumerate(zip(names, params)):
            values = [0.5 * u(seed * 1000 + k, 0, i) for i in range(p.numel())]
            if n.endswith("ln1.weight") or n.endswith("ln2.weight") or n == "ln_f.weight":
                values = [1 + v for v in values]
            p.data = torch.tensor(values, dtype=torch.float64).view(p.shape)
    rows = batch * length
    ids = [int((u(seed, 1, i) + 1) / 2 * vocab) for i in range(rows)]
    targets = [int((u(seed, 2, i) + 1) / 2 * vocab) for i in range(rows)]

    x = wte(torch.tensor(ids).view(batch, length)) + wpe(torch.arange(length))
    for b in blocks:
        x = b(x)
    head = wte.weight if tied else lm_head.weight
    logits = ln_f(x) @ head.t()
    loss = F.cross_entropy(logits.view(rows, vocab), torch.tensor(targets))
    loss.backward()
    return {"name": name, "vocab": vocab, "context": context, "layers": layers, "d_model": d, "heads": heads,
            "tied": tied, "seed": seed, "batch": batch, "length": length, "ids": ids, "targets": targets,
            "loss": loss.item(),
            "params": [{"name": n, "shape": list(p.shape), "grad": [float(g) for g in p.grad.flatten()]}
                       for n, p in zip(names, params)]}


def main():
    torch.manual_seed(0)  # module construction draws; every value is overwritten
    cases = [case("untied", 11, 6, 2, 8, 2, False, 3, 2, 6),
             case("tied_shorter_than_context", 9, 7, 1, 12, 3, True, 4, 3, 5)]
    out = {"generator": "tests/reference/generate_gpt.py", "torch": torch.__version__, "cases": cases}
    with open(os.path.join(HERE, "gpt.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
