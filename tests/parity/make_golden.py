#!/usr/bin/python3
"""Writes PyTorch golden values for tests/parity_ref_test.cc.

Usage: make_golden.py OUT_DIR

Creates OUT_DIR/batchnorm.json, cross_entropy.json and init.json from the
installed torch (Debian's python3-torch, importable from /usr/bin/python3).
The files are generated at test time and never committed. When torch cannot
be imported the script says why, leaves no golden file behind (so stale files
cannot pass for fresh ones) and exits with 77, which ctest reports as skipped.

Float values are written with repr(), so float32 values round-trip exactly.
"""

import json
import math
import os
import sys

GOLDEN_FILES = ("batchnorm.json", "cross_entropy.json", "init.json")
SKIP = 77


def tolist(t):
    return t.detach().tolist()


def batchnorm_case(torch, name, seed, M, C, steps, dtype="float32", eps=1e-5,
                   momentum=0.1, affine=True, track_running_stats=True,
                   offset=3.0, scale=2.0):
    """BatchNorm1d(C) trained on `steps` batches of [M, C], then evaluated."""
    dt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dt)

    bn = torch.nn.BatchNorm1d(C, eps=eps, momentum=momentum, affine=affine,
                              track_running_stats=track_running_stats,
                              dtype=dt)
    case = {
        "name": name, "dtype": dtype, "M": M, "C": C, "eps": eps,
        "momentum": momentum, "affine": affine,
        "track_running_stats": track_running_stats,
    }
    if affine:
        with torch.no_grad():
            bn.weight.copy_(randn(C) * 0.5 + 1.0)
            bn.bias.copy_(randn(C))
        case["gamma"] = tolist(bn.weight)
        case["beta"] = tolist(bn.bias)
    if track_running_stats:
        case["initial_running_mean"] = tolist(bn.running_mean)
        case["initial_running_var"] = tolist(bn.running_var)

    bn.train()
    case["steps"] = []
    for _ in range(steps):
        x = (randn(M, C) * scale + offset).requires_grad_()
        dy = randn(M, C)
        bn.zero_grad(set_to_none=True)
        y = bn(x)
        y.backward(dy)
        step = {"x": tolist(x), "dy": tolist(dy), "y": tolist(y),
                "dx": tolist(x.grad)}
        if affine:
            step["dgamma"] = tolist(bn.weight.grad)
            step["dbeta"] = tolist(bn.bias.grad)
        if track_running_stats:
            step["running_mean"] = tolist(bn.running_mean)
            step["running_var"] = tolist(bn.running_var)
            step["num_batches_tracked"] = int(bn.num_batches_tracked)
        case["steps"].append(step)

    # Without running statistics, eval normalizes with the batch's own.
    bn.eval()
    with torch.no_grad():
        x = randn(M, C) * scale + offset
        case["eval"] = {"x": tolist(x), "y": tolist(bn(x))}
    return case


def batchnorm_golden(torch):
    return {"cases": [
        batchnorm_case(torch, "default", 1, M=8, C=4, steps=3),
        batchnorm_case(torch, "affine_false", 2, M=6, C=3, steps=2,
                       affine=False),
        batchnorm_case(torch, "momentum_none", 3, M=5, C=4, steps=3,
                       momentum=None),
        batchnorm_case(torch, "custom_eps_momentum", 4, M=10, C=5, steps=3,
                       eps=1e-3, momentum=0.3),
        batchnorm_case(torch, "odd_channels", 5, M=9, C=7, steps=2),
        batchnorm_case(torch, "no_running_stats", 6, M=4, C=3, steps=2,
                       track_running_stats=False),
        batchnorm_case(torch, "float64", 7, M=8, C=5, steps=3,
                       dtype="float64"),
    ]}


def cross_entropy_case(torch, name, logits, labels):
    logits = logits.clone().requires_grad_()
    labels = torch.tensor(labels, dtype=torch.int64)
    loss = torch.nn.functional.cross_entropy(logits, labels)  # mean
    loss.backward()
    return {"name": name, "dtype": str(logits.dtype).replace("torch.", ""),
            "M": logits.shape[0], "C": logits.shape[1],
            "logits": tolist(logits), "labels": labels.tolist(),
            "loss": loss.item(), "dlogits": tolist(logits.grad)}


def cross_entropy_golden(torch):
    gen = torch.Generator().manual_seed(11)
    huge = torch.tensor([[1e4, -1e4, 0.0],
                         [-1e4, 1e4, 5.0],
                         [1e4, 1e4, -1e4],
                         [0.0, 0.0, 0.0]], dtype=torch.float32)
    return {"cases": [
        cross_entropy_case(
            torch, "random_f32",
            torch.randn(6, 5, generator=gen) * 3,
            torch.randint(0, 5, (6,), generator=gen).tolist()),
        cross_entropy_case(torch, "huge_logits_f32", huge, [0, 0, 1, 2]),
        cross_entropy_case(
            torch, "single_row_f32", torch.randn(1, 10, generator=gen),
            [7]),
        cross_entropy_case(
            torch, "random_f64",
            torch.randn(5, 7, generator=gen, dtype=torch.float64) * 2,
            torch.randint(0, 7, (5,), generator=gen).tolist()),
    ]}


def init_golden(torch):
    init = torch.nn.init
    linear = []
    for seed, (fan_in, fan_out) in enumerate(
            [(784, 1024), (1024, 1000), (3, 4096), (100, 2000), (4096, 512),
             (1, 1024)]):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(fan_in, fan_out)
        # The bound as torch.nn.Linear.reset_parameters computes it:
        # kaiming_uniform_(a=√5) → √3·gain/√fan_in, gain = √(2/(1 + 5)).
        gain = init.calculate_gain("leaky_relu", math.sqrt(5))
        linear.append({
            "in_features": fan_in, "out_features": fan_out,
            "max_abs_weight": layer.weight.abs().max().item(),
            "max_abs_bias": layer.bias.abs().max().item(),
            "weight_bound": math.sqrt(3.0) * gain / math.sqrt(fan_in),
            "bias_bound": 1 / math.sqrt(fan_in),
        })

    fans = []
    for shape in ([256, 784], [10, 1], [1, 10], [64, 3, 3, 3], [32, 16, 5],
                  [8, 4, 3, 3], [5], []):
        try:
            fan_in, fan_out = init._calculate_fan_in_and_fan_out(
                torch.empty(shape))
            fans.append({"shape": shape, "fan_in": fan_in,
                         "fan_out": fan_out})
        except ValueError as e:
            fans.append({"shape": shape, "error": str(e)})

    gains = []
    names = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
             "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh",
             "relu", "leaky_relu", "selu"]
    for name in names:
        gains.append({"nonlinearity": name, "param": None,
                      "gain": init.calculate_gain(name)})
    for param in (0.2, 0.0, 1.0):
        gains.append({"nonlinearity": "leaky_relu", "param": param,
                      "gain": init.calculate_gain("leaky_relu", param)})
    return {"linear_default": linear, "fans": fans, "gains": gains}


def main(argv):
    if len(argv) != 2:
        print("usage: make_golden.py OUT_DIR", file=sys.stderr)
        return 2
    out_dir = argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for name in GOLDEN_FILES:
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            os.remove(path)

    try:
        import torch
    except Exception as e:  # ImportError, or a broken install
        print(f"make_golden.py: cannot import torch with {sys.executable} "
              f"({type(e).__name__}: {e}); install python3-torch "
              "(scripts/install-deps.sh) to run the PyTorch parity tests")
        return SKIP

    torch.set_num_threads(1)
    meta = {"torch_version": torch.__version__}
    for name, make in (("batchnorm.json", batchnorm_golden),
                       ("cross_entropy.json", cross_entropy_golden),
                       ("init.json", init_golden)):
        data = dict(meta, **make(torch))
        # Write then rename, so a reader never sees half a file.
        path = os.path.join(out_dir, name)
        with open(path + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)
        print(f"make_golden.py: wrote {path}")
    print(f"make_golden.py: torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
