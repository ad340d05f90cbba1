#!/usr/bin/env python3
"""trajectory.py — copper and the PyTorch reference from the same start on the same batches.

The reference model is initialised from --seed and its weights are written with copper's
names (--save-init); then it trains --steps steps on a copper data file in file order, 32
examples a step, with copper's step schedule (5 % warmup, cosine to 10 %), AdamW and
clipping at 1, logging the loss of every step. copper does the same with

    copper task train --task T --pe P --steps N --init INIT --train-data FILE --out DIR

so the two differ only in rounding. scripts/trajectory_torch.sh runs both and prints the
two loss curves side by side and the held-out errors.
"""
import argparse
import json
import random
import time

import torch

import grad_parity as G
import tasks_ref as R


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["flipflop", "selective-copy"], required=True)
    ap.add_argument("--pe", required=True)
    ap.add_argument("--data", required=True, help="training examples, a copper data file, used in order")
    ap.add_argument("--steps", type=int, help="train this many steps (0: only write the initial weights)")
    ap.add_argument("--seconds", type=float, help="or train for this long, the schedule following the fraction of "
                    "the time spent (as `copper task train --time-budget`)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-init", required=True, help="where to write the initial weights (copper's names)")
    ap.add_argument("--init", help="start from these weights (copper's names) instead of the seeded ones")
    ap.add_argument("--log", required=True, help="JSON lines {step, loss, lr}, one per step")
    args = ap.parse_args()
    if (args.steps is None) == (args.seconds is None):
        ap.error("give one of --steps and --seconds")
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    task = R.FlipFlop() if args.task == "flipflop" else R.SelectiveCopy()
    lr, ctx, nominal = R.RECIPES[args.task]
    R.CONTEXT = ctx
    model = R.LM(len(task.vocab), ctx, args.pe)
    if args.init:  # copper's initial weights instead (`copper task train --steps 0` writes them)
        G.load_copper_weights(model, args.init)
    G.save_copper_weights(model, args.save_init)
    if args.steps == 0:
        return
    pool = G.examples(args.task, task.vocab, args.data)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    t0, step = time.time(), 0
    with open(args.log, "w") as log:
        while step < args.steps if args.steps is not None else time.time() - t0 < args.seconds:
            if args.steps is not None:
                rate = R.lr_at_step(step, args.steps, lr)
            else:
                rate = R.lr_at_fraction((time.time() - t0) / args.seconds, nominal, lr)
            ids, tgt = G.batch_of([pool[(step * 32 + i) % len(pool)] for i in range(32)], ctx)
            loss = R.train_step(model, opt, ids, tgt, rate)
            step += 1
            log.write(json.dumps({"step": step, "loss": loss, "lr": rate}) + "\n")
    erng = random.Random(10_000 + args.seed)
    out = {"task": args.task, "pe": args.pe, "seed": args.seed, "steps": step, "seconds": round(time.time() - t0, 1)}
    for name, t in task.ood().items():
        sample_err, tok_err = R.evaluate(model, t, erng)
        out[name] = round(100 * (tok_err if args.task == "flipflop" else sample_err), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
