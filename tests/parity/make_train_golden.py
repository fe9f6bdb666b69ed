#!/usr/bin/python3
"""Golden values for the Trainer parity test, made with PyTorch at test time.

Writes OUT_DIR/train_model.blst (the initial weights, via tools/export_torch.py) and
OUT_DIR/train_golden.json: a batch, its labels, the loss and every gradient of one step from those
weights, and the parameters and BatchNorm running statistics after 3 steps of SGD with momentum, Adam
and AdamW (weight decay on). Dropout p = 0. Exit 77 when torch is missing.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, HERE)
try:
    import torch
    import torch.nn as nn
    import xxhash  # noqa: F401
except ImportError as e:
    print(f"skipped: {e} (install python3-torch python3-xxhash)")
    sys.exit(77)
from export_torch import export  # noqa: E402
from torch_blocks import StandardBlock  # noqa: E402


# The Linear before each BatchNorm has no bias: such a bias has a zero gradient in exact arithmetic, so
# its computed gradient is rounding noise, which Adam's normalization turns into steps of ±lr in any
# implementation; no two libraries can agree on where it goes. Dropout p = 0.
def make_model():
    torch.manual_seed(3)
    return nn.Sequential(StandardBlock(20, 16, p=0.0, bias=False),
                         StandardBlock(16, 12, p=0.0, bias=False), nn.Linear(12, 5))


def state(model):
    out = {k: v.detach().flatten().tolist() for k, v in model.named_parameters()}
    for k, v in model.named_buffers():
        if "running" in k:
            out[k] = v.detach().flatten().tolist()
    return out


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for f in ("train_golden.json", "train_model.blst"):
        if os.path.exists(os.path.join(out_dir, f)):
            os.remove(os.path.join(out_dir, f))
    model = make_model()
    export(model, os.path.join(out_dir, "train_model.blst"))
    torch.manual_seed(4)
    x = torch.randn(32, 20) * 1.5 + 0.3
    y = torch.randint(0, 5, (32,))
    golden = {"x": x.flatten().tolist(), "labels": y.tolist(), "rows": 32}

    model.train()
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    golden["loss"] = loss.item()
    golden["grads"] = {k: p.grad.flatten().tolist() for k, p in model.named_parameters()}

    configs = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
        "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
        "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
        "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
    }
    golden["after3"] = {}
    for name, make_opt in configs.items():
        model = make_model()
        model.train()
        opt = make_opt(model.parameters())
        for step in range(3):
            xs = x * (1 + 0.1 * step)
            opt.zero_grad()
            nn.CrossEntropyLoss()(model(xs), y).backward()
            opt.step()
        golden["after3"][name] = state(model)
    with open(os.path.join(out_dir, "train_golden.json"), "w") as f:
        json.dump(golden, f)
    print("wrote", out_dir)


if __name__ == "__main__":
    main()
