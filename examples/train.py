"""A stand-in training script (stdlib only): fakes a loss curve from its hyper-parameters."""

import argparse
import json
import math
import os
import random

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--norm", default="batch")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--amp", action="store_true")
parser.add_argument("--out", default=os.environ.get("EXPDEPLOY_RUN_DIR", "."))
parser.add_argument("--_tags", default="")  # a composite sweep's subtest (examples/wandb/sweep.yaml)
args = parser.parse_args()

rng = random.Random(args.seed)
os.makedirs(args.out, exist_ok=True)
bonus = 0.05 if args.norm == "layer" else 0.0
with open(os.path.join(args.out, "metrics.jsonl"), "a") as log:
    for epoch in range(args.epochs):
        loss = math.exp(-args.lr * 10 * (epoch + 1)) + bonus + rng.random() * 0.01
        log.write(json.dumps({"step": epoch, "val_loss": round(loss, 4)}) + "\n")
        print(f"epoch {epoch} lr={args.lr} norm={args.norm} val_loss={loss:.4f}")
