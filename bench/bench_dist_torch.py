#!/usr/bin/python3
"""PyTorch's peer of bench_dist: DDP (gloo, CPU) + ZeroRedundancyOptimizer(AdamW) on the
same sizes and ranks (docs/benchmarks.md, "Distributed").

    /usr/bin/python3 bench/bench_dist_torch.py --ranks 2 --case 1x2^24 [--steps 5 --reps 5]

Each rank holds the parameters (one tensor of 2^24 floats, or 4,096 of 4,096) and its own
constant gradients G, given to DDP as the gradient of sum_k (p_k * G_k).sum(). One torch
thread per rank (as bench_dist runs one xoptim thread per rank). Per iteration rank 0
times (a) the backward pass through DDP (its gradient allreduce, bucketed, overlapped with
the backward), (b) the same backward pass on the bare module without DDP, and (c)
ZeroRedundancyOptimizer.step() (AdamW on the rank's partition, then the parameters'
broadcasts). The step, comparable with bench_dist's step() (gradients averaged, the
fused step on the shard, parameters gathered), is (a) - (b) + (c). Prints one JSON line of
medians over --reps repetitions of --steps iterations each.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel as DDP

CASES = {"1x2^24": (1, 1 << 24), "4096x4096": (4096, 4096)}


class Parameters(torch.nn.Module):
    def __init__(self, count, size):
        super().__init__()
        self.ps = torch.nn.ParameterList([torch.nn.Parameter(torch.full((size,), 0.5)) for _ in range(count)])

    def forward(self, grads):
        return sum((p * g).sum() for p, g in zip(self.ps, grads))


def run(rank, ranks, init_file, args, out_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=ranks)
    count, size = CASES[args.case]
    grads = [torch.full((size,), 1e-3 * (rank + 1)) for _ in range(count)]
    module = Parameters(count, size)
    bare = Parameters(count, size)  # the backward pass alone, without DDP
    model = DDP(module)
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW, lr=1e-3,
                                  betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, foreach=args.foreach)

    def iteration():
        dist.barrier()
        t0 = time.perf_counter()
        model(grads).backward()
        t1 = time.perf_counter()
        opt.step()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        bare(grads).backward()
        t3 = time.perf_counter()
        bare.zero_grad(set_to_none=False)
        return t1 - t0, t2 - t1, t3 - t2

    iteration()  # warm-up: buckets, state
    medians = {"backward_ddp": [], "zero_step": [], "backward_bare": [], "step": []}
    for _ in range(args.reps):
        runs = [iteration() for _ in range(args.steps)]
        ddp, step, bare_bw = (statistics.mean(r[i] for r in runs) for i in range(3))
        medians["backward_ddp"].append(ddp)
        medians["zero_step"].append(step)
        medians["backward_bare"].append(bare_bw)
        medians["step"].append(ddp - bare_bw + step)
    if rank == 0:
        result = {k: 1e3 * statistics.median(v) for k, v in medians.items()}
        result.update({"case": args.case, "ranks": ranks, "torch": torch.__version__, "foreach": args.foreach,
                       "unit": "ms"})
        with open(out_file, "w") as f:
            json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--case", choices=sorted(CASES), default="1x2^24")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--foreach", type=int, default=1, help="AdamW's foreach implementation (1) or the loop (0)")
    args = p.parse_args()
    args.foreach = bool(args.foreach)
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "result.json")
        mp.spawn(run, args=(args.ranks, os.path.join(scratch, "init"), args, out), nprocs=args.ranks)
        with open(out) as f:
            print(f.read(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
