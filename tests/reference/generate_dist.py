#!/usr/bin/python3
"""Distributed replay cases from PyTorch DDP (gloo, CPU) + ZeroRedundancyOptimizer(AdamW).

Run from anywhere with the Debian interpreter that has torch and numpy:

    /usr/bin/python3 tests/reference/generate_dist.py

Writes tests/replay_cases/<NAME>/ for every case below: case.json (with "ranks" and
"mode"), NAME.init.npy, NAME.grad.T.rR.npy (rank R's gradient at step T) and
expected/NAME.final.npy (rank 0's parameters at the end; every rank holds the same).

Each rank gets its own gradients into DDP through a loss whose gradient they are exactly:
loss = sum_k (p_k * G_k).sum(), so the gradient of p_k is G_k bit for bit. DDP divides
every gradient by the world size and sums them across ranks (gloo allreduce);
ZeroRedundancyOptimizer steps each rank's share of the parameters with
torch.optim.AdamW (foreach=False) and broadcasts it. With "clip_global_norm",
torch.nn.utils.clip_grad_norm_ runs on the averaged gradients before the step.
Inputs come from u() of generate.py (tests/support/reference.hpp has it in C++).
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel as DDP

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from generate import NP_DTYPES, grad_values, init_values, numel  # noqa: E402

ADAMW = {"lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.01, "amsgrad": False,
         "maximize": False, "bias_correction": True}

# Shapes with sizes not divisible by 2, 3 or 4, a tensor smaller than the ranks, one element.
PARAMS = [("layer0.weight", [5, 7]), ("layer0.bias", [5]), ("layer1.weight", [11, 5]),
          ("head.weight", [3, 11]), ("head.bias", [3]), ("gain", [1])]

# name, ranks, xoptim mode, dtype, steps, seed, gradient scale, extra case.json keys
CASES = [
    ("ddp_zero_adamw_r2_f32", 2, "zero1", "float32", 5, 41, 1.0, {}),
    ("ddp_zero_adamw_r3_clip_f32", 3, "zero1", "float32", 5, 42, 1.0, {"clip_global_norm": 1.0}),
    ("ddp_zero_adamw_r4_f64", 4, "data_parallel", "float64", 4, 43, 0.5, {}),
]


def rank_grad(seed, t, rank, shape, gscale):
    """Rank `rank`'s gradient of the parameter seeded `seed` at step t (1-based)."""
    return grad_values(seed, 1000 * (rank + 1) + t, numel(shape), gscale, 0)


class Parameters(torch.nn.Module):
    def __init__(self, inits):
        super().__init__()
        self.ps = torch.nn.ParameterList([torch.nn.Parameter(torch.from_numpy(a.copy())) for a in inits])

    def forward(self, grads):
        return sum((p * g).sum() for p, g in zip(self.ps, grads))


def run_rank(rank, ranks, init_file, spec, result_file):
    name, _, _, dtype, steps, seed, gscale, extra = spec
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=ranks)
    npdt = NP_DTYPES[dtype]
    seeds = [seed * 1000 + k for k in range(len(PARAMS))]
    inits = [np.array(init_values(sd, numel(sh)), dtype=npdt).reshape(sh) for sd, (_, sh) in zip(seeds, PARAMS)]
    module = Parameters(inits)
    model = DDP(module)
    hyper = dict(ADAMW)
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW, lr=hyper["lr"],
                                  betas=tuple(hyper["betas"]), eps=hyper["eps"], weight_decay=hyper["weight_decay"],
                                  amsgrad=hyper["amsgrad"], maximize=hyper["maximize"], foreach=False)
    for t in range(1, steps + 1):
        grads = [torch.from_numpy(np.array(rank_grad(sd, t, rank, sh, gscale), dtype=npdt).reshape(sh))
                 for sd, (_, sh) in zip(seeds, PARAMS)]
        opt.zero_grad()
        model(grads).backward()
        if "clip_global_norm" in extra:
            torch.nn.utils.clip_grad_norm_(model.parameters(), extra["clip_global_norm"])
        opt.step()
    if rank == 0:
        np.savez(result_file, *[p.detach().numpy().astype(npdt) for p in module.ps])
    dist.barrier()
    dist.destroy_process_group()


def generate(spec):
    name, ranks, mode, dtype, steps, seed, gscale, extra = spec
    d = os.path.join(TESTS, "replay_cases", name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(os.path.join(d, "expected"))
    npdt = NP_DTYPES[dtype]
    seeds = [seed * 1000 + k for k in range(len(PARAMS))]
    for sd, (pname, sh) in zip(seeds, PARAMS):
        np.save(os.path.join(d, f"{pname}.init.npy"), np.array(init_values(sd, numel(sh)), dtype=npdt).reshape(sh))
        for t in range(1, steps + 1):
            for r in range(ranks):
                g = np.array(rank_grad(sd, t, r, sh, gscale), dtype=npdt).reshape(sh)
                np.save(os.path.join(d, f"{pname}.grad.{t}.r{r}.npy"), g)
    with tempfile.TemporaryDirectory() as scratch:
        result = os.path.join(scratch, "final.npz")
        mp.spawn(run_rank, args=(ranks, os.path.join(scratch, "init"), spec, result), nprocs=ranks)
        finals = np.load(result)
        for k, (pname, _) in enumerate(PARAMS):
            np.save(os.path.join(d, "expected", f"{pname}.final.npy"), finals[f"arr_{k}"])
    doc = {"optimizer": "adamw", "hyper": ADAMW, "ranks": ranks, "mode": mode}
    doc.update(extra)
    doc.update({"steps": steps, "dtype": dtype, "params": [pn for pn, _ in PARAMS]})
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    return d


def main():
    for spec in CASES:
        print(generate(spec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
