#!/usr/bin/python3
"""Golden values for the optimizer parity test, made with PyTorch at test time.

Writes OUT_DIR/optimizer_golden.json: for each case (SGD with momentum, dampening, Nesterov and
weight decay; Adam; AdamW), a parameter of 1037 floats (a whole number of vectors and a tail), the
gradients of 5 steps, and the parameter and the optimizer's buffers after them. ballast's updates
round as torch's CPU kernels do, so the test asks for the same bits. Exit 77 when torch is missing.
"""
import json
import os
import sys

try:
    import torch
except ImportError as e:
    print(f"skipped: {e} (install python3-torch)")
    sys.exit(77)

CASES = [
    ("sgd", dict(lr=0.05)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, weight_decay=1e-3, betas=(0.8, 0.99), eps=1e-6)),
    ("adamw", dict(lr=1e-2, weight_decay=1e-2)),
]
MAKERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
STEPS, N = 5, 1037


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "optimizer_golden.json")
    if os.path.exists(path):
        os.remove(path)
    torch.manual_seed(5)
    cases = []
    for kind, opts in CASES:
        p = torch.nn.Parameter(torch.randn(N))
        case = {"kind": kind, "options": opts, "param": p.detach().tolist(), "grads": []}
        opt = MAKERS[kind]([p], **opts)
        for _ in range(STEPS):
            g = torch.randn(N) * 0.1
            case["grads"].append(g.tolist())
            p.grad = g.clone()
            opt.step()
        state = opt.state[p]
        case["after"] = {"param": p.detach().tolist()}
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            if state.get(key) is not None:
                case["after"][key] = state[key].tolist()
        cases.append(case)
    with open(path + ".tmp", "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
