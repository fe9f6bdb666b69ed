#!/usr/bin/python3
"""Golden values for the Trainer parity test, made with PyTorch at test time.

Writes OUT_DIR/train_model.blst (the initial weights, via tools/export_torch.py) and
OUT_DIR/train_golden.json: a batch, its labels, the loss and every gradient of one step from those
weights (cross-entropy, with label smoothing, and MSE against targets), the parameters and BatchNorm
running statistics after 3 steps of SGD with momentum (also with gradient clipping), Adam and AdamW
(weight decay on), and the learning rates torch.optim.lr_scheduler gives per epoch. Dropout p = 0.
Exit 77 when torch is missing.
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


CLIP = 0.5  # max_norm of the clipping test, under the gradients' norm
EPOCHS = 7  # of the schedules


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

    # The same step with label smoothing, and with MSE against targets.
    def one_step(loss_fn, target):
        m = make_model()
        m.train()
        loss = loss_fn(m(x), target)
        loss.backward()
        return {"loss": loss.item(),
                "grads": {k: p.grad.flatten().tolist() for k, p in m.named_parameters()}}
    golden["smoothing"] = one_step(nn.CrossEntropyLoss(label_smoothing=0.1), y)
    golden["smoothing"]["eps"] = 0.1
    targets = torch.randn(32, 5)
    golden["mse"] = one_step(nn.MSELoss(), targets)
    golden["mse"]["targets"] = targets.flatten().tolist()

    configs = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
        "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
        "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
        "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
    }
    configs["sgd_clip"] = configs["sgd"]
    golden["after3"] = {}
    for name, make_opt in configs.items():
        model = make_model()
        model.train()
        opt = make_opt(model.parameters())
        for step in range(3):
            xs = x * (1 + 0.1 * step)
            opt.zero_grad()
            nn.CrossEntropyLoss()(model(xs), y).backward()
            if name == "sgd_clip":
                norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=CLIP)
                assert norm > CLIP, "the clipping test must clip"
            opt.step()
        golden["after3"][name] = state(model)

    # Learning rates per epoch (read before each scheduler.step()), from a base of 0.1 over 7 epochs:
    # StepLR, CosineAnnealingLR, LinearLR as a warmup, and a warmup chained with each.
    sched = torch.optim.lr_scheduler

    def warmup(opt, w):
        return sched.LinearLR(opt, start_factor=1 / (w + 1), total_iters=w)
    schedules = {
        "step": ({"kind": "step", "step_size": 2, "gamma": 0.5}, lambda o: sched.StepLR(o, 2, 0.5)),
        "cosine": ({"kind": "cosine"}, lambda o: sched.CosineAnnealingLR(o, T_max=EPOCHS)),
        "warmup": ({"kind": "constant", "warmup": 3}, lambda o: warmup(o, 3)),
        "warmup_cosine": ({"kind": "cosine", "warmup": 2}, lambda o: sched.ChainedScheduler(
            [warmup(o, 2), sched.CosineAnnealingLR(o, T_max=EPOCHS)])),
        "warmup_step": ({"kind": "step", "step_size": 3, "gamma": 0.1, "warmup": 2},
                        lambda o: sched.ChainedScheduler([warmup(o, 2), sched.StepLR(o, 3, 0.1)])),
    }
    golden["schedules"] = {}
    for name, (spec, make_sched) in schedules.items():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        s = make_sched(opt)
        lrs = []
        for _ in range(EPOCHS):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        golden["schedules"][name] = dict(spec, base=0.1, epochs=EPOCHS, lrs=lrs)
    with open(os.path.join(out_dir, "train_golden.json"), "w") as f:
        json.dump(golden, f)
    print("wrote", out_dir)


if __name__ == "__main__":
    main()
