#!/usr/bin/python3
"""Export a PyTorch module to ballast's .blst format (see docs/FORMAT.md).

Run with Debian's /usr/bin/python3 (python3-torch, python3-xxhash):

    from export_torch import export
    export(model, "model.blst")            # model: an nn.Module, e.g. nn.Sequential

    /usr/bin/python3 tools/export_torch.py MODULE.pt OUT.blst [--description TEXT]

MODULE.pt is a module saved whole with torch.save(model, path); the classes it was built from must be
importable when it is loaded (define them in a module, not in __main__).

Supported: nn.Sequential and any module tree whose forward applies its children in the order they were
registered (such as a StandardBlock of Linear -> BatchNorm1d -> ReLU -> Dropout), made of Linear (bias or
not), BatchNorm1d (eps, momentum including None, affine, track_running_stats), ReLU, LeakyReLU, Tanh,
Sigmoid, Dropout, Identity and Flatten. Anything else is refused with a message naming the module and its
path. The model is exported as it is (BatchNorm running statistics included); ballast folds BatchNorm
into the weights when it loads the model for inference.
"""
import argparse
import copy
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import xxhash

MAGIC = b"BLST\r\n\x1a\n"
VERSION = (1, 0)
HEADER_SIZE = 128
ALIGN = 64


class ExportError(ValueError):
    """A module that ballast cannot represent."""


def _u32(v):
    return struct.pack("<I", v)


def _u64(v):
    return struct.pack("<Q", v)


def _str(s):
    b = s.encode("utf-8")
    return _u32(len(b)) + b


def _attr(name, value):
    out = _str(name)
    if isinstance(value, bool):
        return out + b"\x02" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return out + b"\x00" + struct.pack("<q", value)
    if isinstance(value, float):
        return out + b"\x01" + struct.pack("<d", value)
    if isinstance(value, str):
        return out + b"\x03" + _str(value)
    raise TypeError(f"attribute {name}: unsupported type {type(value)}")


def _f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4", copy=False))


def _leaves(module, path):
    """The modules the forward pass applies, in order: (path, module)."""
    if isinstance(module, (nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.LeakyReLU, nn.Tanh,
                           nn.Sigmoid, nn.Dropout, nn.Identity, nn.Flatten)):
        return [(path, module)]
    # Every use of a child, as the forward pass makes it: named_children()
    # lists a module used twice (one nn.ReLU() shared, tied weights) once.
    children = [(name, child) for name, child in module._modules.items() if child is not None]
    if not children:
        raise ExportError(f"module '{path or '<root>'}' of type {type(module).__name__} is not "
                          "supported by ballast (supported: Linear, BatchNorm1d, ReLU, LeakyReLU, "
                          "Tanh, Sigmoid, Dropout, Identity, Flatten and containers of them)")
    if type(module) in (nn.ModuleList, nn.ModuleDict):
        raise ExportError(f"module '{path or '<root>'}' is a {type(module).__name__}, whose "
                          "order of use is not known; use nn.Sequential")
    out = []
    for name, child in children:
        out += _leaves(child, f"{path}.{name}" if path else name)
    return out


def _node(path, m, params):
    """(name, op, attrs, [(param name, tensor)]) for one leaf module."""
    name = path or "module"
    if isinstance(m, nn.Linear):
        attrs = {"in_features": m.in_features, "out_features": m.out_features,
                 "bias": m.bias is not None}
        ps = [("weight", m.weight)] + ([("bias", m.bias)] if m.bias is not None else [])
        return name, "linear", attrs, ps
    if isinstance(m, nn.BatchNorm1d):
        attrs = {"num_features": m.num_features, "eps": float(m.eps),
                 "momentum": -1.0 if m.momentum is None else float(m.momentum),
                 "affine": bool(m.affine), "track_running_stats": bool(m.track_running_stats)}
        ps = []
        if m.affine:
            ps += [("weight", m.weight), ("bias", m.bias)]
        if m.track_running_stats:
            if m.running_mean is None or m.running_var is None:
                raise ExportError(f"module '{name}': BatchNorm1d tracks running statistics but "
                                  "has none")
            ps += [("running_mean", m.running_mean), ("running_var", m.running_var)]
        return name, "batchnorm1d", attrs, ps
    if isinstance(m, nn.LeakyReLU):
        return name, "leaky_relu", {"negative_slope": float(m.negative_slope)}, []
    if isinstance(m, nn.Dropout):
        return name, "dropout", {"p": float(m.p)}, []
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1:
            raise ExportError(f"module '{name}': Flatten(start_dim={m.start_dim}) is not "
                              "supported; ballast works on [batch, features] rows")
        return name, "identity", {}, []
    op = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "identity"}
    return name, op[type(m)], {}, []


def _check_order(module, in_features):
    """Refuses an export whose layers, applied once each in order, do not compute what the module
    does in eval mode: a forward that calls its children in another order, skips one, or calls
    one registered under two names once. Runs on a float32 CPU copy in eval mode (what is
    exported), so the module itself, its modes and its running statistics stay as they were."""
    twin = copy.deepcopy(module).float().cpu().eval()
    leaves = _leaves(twin, "")
    with torch.no_grad():
        x = torch.randn(8, in_features, generator=torch.Generator().manual_seed(0))
        try:
            want = twin(x.clone())  # (a first layer may work in place)
        except Exception as e:  # noqa: BLE001: any failure of the user's forward
            raise ExportError(f"cannot check the export: the module's forward failed on a "
                              f"[8, {in_features}] batch: {type(e).__name__}: {e}") from e
        if not isinstance(want, torch.Tensor):
            raise ExportError(f"the module's forward returns a {type(want).__name__}, not one "
                              "tensor")
        got = x.clone()
        try:
            for _, m in leaves:
                got = m(got)
        except RuntimeError:  # shapes that do not chain
            got = None
    if got is None or got.shape != want.shape or not torch.allclose(
            got, want, rtol=1e-4, atol=1e-5, equal_nan=True):
        raise ExportError("the module's forward does not apply its layers once each in the order "
                          f"they are registered ({', '.join(p or '<root>' for p, _ in leaves)}), "
                          "so the exported graph would compute something else; use an "
                          "nn.Sequential that lists each use")


def serialize(module, description="", input_names="input", output_names="output"):
    """The .blst bytes of `module`."""
    leaves = _leaves(module, "")
    nodes = [_node(p, m, None) for p, m in leaves]
    first_linear = next((n for n in nodes if n[1] == "linear"), None)
    if first_linear is None:
        raise ExportError("the model has no Linear layer, so its input width is unknown")
    in_features = first_linear[2]["in_features"]
    for n in nodes:  # layers before the first Linear keep the input width
        if n is first_linear:
            break
        if n[1] == "batchnorm1d":
            in_features = n[2]["num_features"]
    _check_order(module, in_features)

    metadata = {
        "producer": f"export_torch.py (torch {torch.__version__})",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "description": description,
        "input_names": input_names,
        "output_names": output_names,
    }
    meta = _u32(len(metadata)) + b"".join(_str(k) + _str(v) for k, v in sorted(metadata.items()))

    tensors = []  # (name, float32 array)
    graph = _u64(in_features) + _u32(len(nodes))
    names = set()
    for name, op, attrs, params in nodes:
        if name in names:
            raise ExportError(f"module path '{name}' appears twice")
        names.add(name)
        graph += _str(name) + _str(op) + _u32(len(attrs))
        graph += b"".join(_attr(k, attrs[k]) for k in sorted(attrs))
        graph += _u32(len(params))
        for pname, t in sorted(params, key=lambda p: p[0]):
            graph += _str(pname) + _u32(len(tensors))
            tensors.append((f"{name}.{pname}", _f32(t)))

    def directory(offsets):
        out = _u32(len(tensors))
        for (tname, a), off in zip(tensors, offsets):
            out += _str(tname) + b"\x00" + bytes([a.ndim])
            out += b"".join(struct.pack("<q", d) for d in a.shape)
            out += _u64(off) + _u64(a.nbytes) + _u64(xxhash.xxh3_64_intdigest(a.tobytes()))
        return out

    meta_off = HEADER_SIZE
    graph_off = meta_off + len(meta)
    dir_off = graph_off + len(graph)
    dir_len = len(directory([0] * len(tensors)))
    align = lambda v: (v + ALIGN - 1) // ALIGN * ALIGN
    data_off = align(dir_off + dir_len)
    offsets, end = [], data_off
    for _, a in tensors:
        offsets.append(align(end))
        end = offsets[-1] + a.nbytes
    dir_bytes = directory(offsets)

    head = MAGIC + struct.pack("<HHI", VERSION[0], VERSION[1], 0) + _u64(end)
    head += _u64(meta_off) + _u64(len(meta)) + _u64(graph_off) + _u64(len(graph))
    head += _u64(dir_off) + _u64(len(dir_bytes)) + _u64(data_off)
    h = xxhash.xxh3_64()
    for part in (head, meta, graph, dir_bytes):
        h.update(part)
    head += _u64(h.intdigest())
    head += b"\x00" * (HEADER_SIZE - len(head))

    out = bytearray(head + meta + graph + dir_bytes)
    for (_, a), off in zip(tensors, offsets):
        out += b"\x00" * (off - len(out))
        out += a.tobytes()
    return bytes(out)


def export(module, path, description=""):
    """Writes `module` to `path` atomically: a temporary file of its own in the target's directory,
    synced and renamed into place, then the directory synced, so that a crash leaves the old file
    or the new one, never half of one."""
    import os
    import tempfile
    data = serialize(module, description=description)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".tmp-")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return len(data)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Export a torch.save'd module to ballast's .blst")
    ap.add_argument("module", help="MODULE.pt saved with torch.save(model, path)")
    ap.add_argument("out", help="OUT.blst")
    ap.add_argument("--description", default="", help="stored in the model's metadata")
    args = ap.parse_args(argv)
    try:
        model = torch.load(args.module, map_location="cpu")
    except FileNotFoundError:
        print(f"export_torch: no such file '{args.module}'", file=sys.stderr)
        return 1
    except Exception as e:  # unpickling errors name the missing class
        print(f"export_torch: cannot load '{args.module}': {e}", file=sys.stderr)
        return 1
    if not isinstance(model, nn.Module):
        print(f"export_torch: '{args.module}' holds a {type(model).__name__}, not an nn.Module "
              "(a state_dict needs the model's code: build the model, load_state_dict, then "
              "call export() from Python)", file=sys.stderr)
        return 1
    try:
        n = export(model, args.out, description=args.description)
    except ExportError as e:
        print(f"export_torch: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({n} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
