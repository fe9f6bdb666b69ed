#!/usr/bin/python3
"""End-to-end parity: random PyTorch models, trained a few steps so their BatchNorm running statistics
are not trivial, exported with tools/export_torch.py and run by `ballast run` on every path (default,
hwy, onednn, ref, --no-fuse). Outputs must match PyTorch's eval outputs within 1e-5 relative.

usage: model_parity.py BALLAST_BINARY WORK_DIR      (exit 77: PyTorch missing, test skipped)
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, HERE)

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import xxhash  # noqa: F401  (needed by the exporter)
except ImportError as e:
    print(f"skipped: {e} (install python3-torch python3-xxhash)")
    sys.exit(77)

from export_torch import ExportError, export  # noqa: E402
from torch_blocks import StandardBlock  # noqa: E402

TOL = 1e-5  # relative: |ballast - torch| <= TOL * max(1, |torch|)


def models():
    torch.manual_seed(0)
    yield "book_mlp", nn.Sequential(StandardBlock(784, 256), StandardBlock(256, 256),
                                    nn.Linear(256, 10)), True
    yield "odd_widths", nn.Sequential(
        nn.Flatten(),
        nn.Linear(13, 17, bias=False), nn.BatchNorm1d(17, affine=False), nn.ReLU(),
        nn.Sequential(nn.Linear(17, 9), nn.BatchNorm1d(9, eps=1e-3, momentum=None),
                      nn.LeakyReLU(0.2), nn.Dropout(0.3)),
        nn.Linear(9, 5), nn.Tanh(), nn.Identity(),
        nn.Linear(5, 3), nn.BatchNorm1d(3, momentum=0.3), nn.Sigmoid()), True
    yield "bn_first_and_last", nn.Sequential(
        nn.BatchNorm1d(31), nn.Linear(31, 33), nn.BatchNorm1d(33, eps=1e-2), nn.ReLU(),
        nn.Linear(33, 7, bias=False), nn.BatchNorm1d(7, affine=False)), True
    # One ReLU and one Linear (tied weights) used twice each: every use is a node.
    act, tied = nn.ReLU(), nn.Linear(8, 8)
    yield "shared_modules", nn.Sequential(nn.Linear(10, 8), act, tied, act, tied, nn.Linear(8, 3),
                                          act), True
    # BatchNorm without running statistics normalizes with the batch's own, in eval too.
    yield "batch_statistics", nn.Sequential(
        nn.Linear(20, 12), nn.BatchNorm1d(12, track_running_stats=False), nn.ReLU(),
        nn.Linear(12, 4)), False


def train_a_little(model, in_features):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(5):
        x = torch.randn(32, in_features) * 2 + 0.5
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def main():
    ballast, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    failures = 0
    paths = [[], ["--backend", "hwy"], ["--backend", "onednn"], ["--backend", "ref"],
             ["--no-fuse"], ["--no-fuse", "--backend", "ref"], ["--threads", "2"]]
    for name, model, batch1 in models():
        in_features = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d)))
        in_features = getattr(in_features, "in_features", None) or in_features.num_features
        train_a_little(model, in_features)
        blst = os.path.join(work, f"{name}.blst")
        export(model, blst)
        for rows in ([1] if batch1 else []) + [37]:
            x = (torch.randn(rows, in_features) * 2 + 0.5).float()
            with torch.no_grad():
                want = model(x).numpy()
            xin = os.path.join(work, f"{name}_{rows}_x.npy")
            np.save(xin, x.numpy())
            for extra in paths:
                yout = os.path.join(work, f"{name}_{rows}_y.npy")
                cmd = [ballast, "run", blst, "--input", xin, "--output", yout] + extra
                r = subprocess.run(cmd, capture_output=True, text=True)
                label = f"{name} rows={rows} {' '.join(extra) or 'default'}"
                if r.returncode != 0:
                    print(f"FAIL {label}: ballast exited {r.returncode}: {r.stderr.strip()}")
                    failures += 1
                    continue
                got = np.load(yout)
                err = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))
                ok = got.shape == want.shape and err <= TOL
                print(f"{'ok  ' if ok else 'FAIL'} {label}: max relative error {err:.2e}")
                failures += 0 if ok else 1
    # The exporter's command line on a torch.save'd module, and CSV through stdout.
    torch.manual_seed(1)
    plain = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    train_a_little(plain, 6)
    pt, blst = os.path.join(work, "plain.pt"), os.path.join(work, "plain.blst")
    torch.save(plain, pt)
    exporter = os.path.join(HERE, "..", "..", "tools", "export_torch.py")
    r = subprocess.run([sys.executable, exporter, pt, blst], capture_output=True, text=True)
    x = torch.randn(4, 6)
    xcsv = os.path.join(work, "plain_x.csv")
    np.savetxt(xcsv, x.numpy(), delimiter=",", fmt="%.9g")
    out = subprocess.run([ballast, "run", blst, "--input", xcsv], capture_output=True, text=True)
    ok = r.returncode == 0 and out.returncode == 0
    if ok:
        got = np.loadtxt(out.stdout.splitlines(), delimiter=",", ndmin=2)
        with torch.no_grad():
            want = plain(x).numpy()
        err = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))
        ok = got.shape == want.shape and err <= TOL
    print(f"{'ok  ' if ok else 'FAIL'} export_torch.py CLI + CSV on stdout "
          f"({r.stderr.strip() or out.stderr.strip() or 'matches'})")
    failures += 0 if ok else 1
    # Unsupported modules are refused with a message naming the module path.
    try:
        export(nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Conv1d(1, 1, 1))),
               os.path.join(work, "bad.blst"))
        print("FAIL: Conv1d was exported")
        failures += 1
    except ExportError as e:
        ok = "'1.0'" in str(e) and "Conv1d" in str(e)
        print(f"{'ok  ' if ok else 'FAIL'} unsupported module refused: {e}")
        failures += 0 if ok else 1
    # A forward that is not its layers once each in order is refused: a layer registered under
    # two names and called once, and layers called in another order than registered.
    class Aliased(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.head = self.fc

        def forward(self, x):
            return self.head(x)

    class Reordered(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.a(self.b(x))

    for bad in (Aliased(), Reordered()):
        try:
            export(bad, os.path.join(work, "bad.blst"))
            print(f"FAIL: {type(bad).__name__} was exported")
            failures += 1
        except ExportError as e:
            ok = "does not apply its layers once each" in str(e)
            print(f"{'ok  ' if ok else 'FAIL'} {type(bad).__name__} refused: {e}")
            failures += 0 if ok else 1
    print(f"{'all passed' if failures == 0 else f'{failures} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
