#!/usr/bin/env python3
"""grad_parity.py — does copper compute the same loss and gradients as the PyTorch reference?

Loads a model trained by copper (config.json + model.safetensors) into the reference model of
tasks_ref.py, takes the first N examples of a data file of its task as one batch, computes the
training loss (mean cross-entropy over the counted positions) and its gradient for every
parameter, and compares them with what `copper task grads` wrote for the same model and batch:

    build/bin/copper task grads --model DIR --data FILE --n 8 --out grads.safetensors
    /usr/bin/python3 bench/torch_ref/grad_parity.py --model DIR --data FILE --n 8 --grads grads.safetensors

Prints one line per parameter (the largest difference relative to the gradient's largest
entry) and exits 1 when the loss or any gradient differs by more than --tol. Both run in f32,
so agreement is expected to about 1e-5 relative; a wrong formula shows up as 1e-2 or more.
scripts/parity_torch.sh runs it for every encoding the reference has.
"""
import argparse
import json
import struct
import sys

import numpy as np
import torch

import tasks_ref as R


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            sys.exit(f"grad_parity: {path}: tensor '{name}' is {e['dtype']}; only F32 is read")
        a, b = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).reshape(e["shape"]).copy())
    return out, meta


# copper's parameter names -> the reference's
TOP = {"embed.weight": "tok.weight", "pe.weight": "pos.weight", "norm_f.weight": "ln.weight",
       "norm_f.bias": "ln.bias", "head.weight": "head.weight"}
IN_BLOCK = {"norm1": "ln1", "norm2": "ln2", "attn.qkv": "qkv", "attn.proj": "proj", "mlp.fc1": "fc1",
            "mlp.fc2": "fc2", "attn.pe.weight": "rel.emb", "attn.pe.pos_emb": "cope.pos_emb"}


def _rename(name, top, in_block, what):
    if name in top:
        return top[name]
    parts = name.split(".")  # blocks.<i>.<rest>
    rest = ".".join(parts[2:])
    for src, dst in in_block.items():
        if rest == src or rest.startswith(src + "."):
            return ".".join(parts[:2] + [dst + rest[len(src):]])
    sys.exit(f"grad_parity: {what} parameter '{name}' has no counterpart in the other model")


def ref_name(name):
    """copper's parameter name -> the reference's."""
    return _rename(name, TOP, IN_BLOCK, "copper")


def copper_name(name):
    """The reference's parameter name -> copper's (the inverse of ref_name)."""
    return _rename(name, {r: c for c, r in TOP.items()}, {r: c for c, r in IN_BLOCK.items()}, "reference")


def save_copper_weights(model, path):
    """The reference model's weights as a safetensors file with copper's names and shapes
    (what `copper task train --init` reads)."""
    header, blobs, offset = {}, [], 0
    for name, p in model.named_parameters():
        t = p.detach()
        if name.endswith("cope.pos_emb"):  # (1, Dh, npos) -> copper's (npos, Dh)
            t = t[0].t()
        b = t.contiguous().numpy().astype(np.float32).tobytes()
        header[copper_name(name)] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def to_ref_shape(name, t):
    """copper's tensor for the reference's parameter `name`, in the reference's layout."""
    if name.endswith("cope.pos_emb"):  # copper (npos, Dh), the reference (1, Dh, npos)
        return t.t().unsqueeze(0)
    return t


def build(model_dir):
    cfg = json.load(open(model_dir + "/config.json"))
    m = cfg["model"]
    unsupported = {"pre_norm": True, "tie_embeddings": False, "mlp": "gelu", "norm": "layernorm",
                   "cope_scale": "appendix", "cope_sep_key": False, "cope_every": 1}
    for k, want in unsupported.items():
        if m.get(k, want) != want:
            sys.exit(f"grad_parity: the reference model has {k} = {want}; this model has {m[k]}")
    if m["pe"] not in ("abs", "rope", "cope", "rel", "none"):
        sys.exit(f"grad_parity: the reference has no '{m['pe']}' encoding (it has abs, rope, cope, rel, none)")
    if m["d_ff"] not in (0, 4 * m["d_model"]):
        sys.exit(f"grad_parity: the reference's MLP is 4x wide; this model has d_ff {m['d_ff']}")
    npos = m["npos"] or m["context"] + 1
    R.CONTEXT = m["context"]
    model = R.LM(m["vocab"], m["context"], m["pe"], d=m["d_model"], layers=m["n_layers"], heads=m["n_heads"])
    for b in model.blocks:  # the reference sizes its tables from the context; copper's may differ
        if b.cope is not None:
            b.cope.npos = npos
        if b.rel is not None:
            b.rel.maxdist = m["context"]
    load_copper_weights(model, model_dir + "/model.safetensors")
    return cfg, model


def load_copper_weights(model, path):
    """Load a safetensors file with copper's names (a model.safetensors, or what
    save_copper_weights wrote) into the reference model; a position table whose size
    differs from the reference's takes copper's size."""
    weights, _ = load_safetensors(path)
    state = {ref_name(name): to_ref_shape(ref_name(name), t) for name, t in weights.items()}
    for name, p in model.named_parameters():
        if name in state and state[name].shape != p.shape:
            p.data = torch.empty(state[name].shape)
    model.load_state_dict(state, strict=True)


def examples(task, vocab, path, n=None):
    """The first n (default: all) examples of a copper data file of `task` as (ids, mask)
    with the vocabulary `vocab` (copper's, from a model's config.json)."""
    vocab = {w: i for i, w in enumerate(vocab)}
    out = []
    with open(path) as f:
        for line in f:
            if len(out) == n:
                break
            line = line.strip()
            if not line:
                continue
            if task == "flipflop":
                ids, mask = [], []
                for k in range(0, len(line), 2):
                    ids += [vocab[line[k]], vocab[line[k + 1]]]
                    mask += [line[k] == "r", False]
            elif task == "selective-copy":
                js = json.loads(line)
                inp, outp = js["input"].split(), js["output"].split()
                ids = [vocab[w] for w in inp + ["|"] + outp]
                mask = [False] * len(inp) + [True] * len(outp) + [False]
            else:
                js = json.loads(line)
                words = js["context"].split() + js["question"].split() + [js["answer"]]
                ids = [vocab[w] for w in words]
                mask = [False] * (len(ids) - 2) + [True, False]
            out.append((ids, mask))
    if n is not None and len(out) < n:
        sys.exit(f"grad_parity: {path} holds {len(out)} examples, fewer than --n {n}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--grads", required=True, help="written by `copper task grads`")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, model = build(args.model)
    model.eval()
    pool = examples(cfg["task"]["task"], cfg["vocab"], args.data, args.n)
    ids, tgt = batch_of(pool, cfg["model"]["context"])
    logits = model(ids)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)
    loss.backward()
    grads, meta = load_safetensors(args.grads)
    ok = True
    copper_loss = float(meta["loss"])
    rel = abs(copper_loss - loss.item()) / max(abs(loss.item()), 1e-30)
    ok &= rel <= args.tol
    print(f"loss: copper {copper_loss:.7g}  torch {loss.item():.7g}  relative difference {rel:.2e}")
    params = dict(model.named_parameters())
    worst = 0.0
    for name, g in grads.items():
        rn = ref_name(name)
        tg = params[rn].grad
        tg = torch.zeros_like(params[rn]) if tg is None else tg
        cg = to_ref_shape(rn, g)
        scale = tg.abs().max().item()
        diff = (cg - tg).abs().max().item() / max(scale, 1e-30) if scale > 0 else (cg.abs().max().item())
        worst = max(worst, diff)
        flag = "" if diff <= args.tol else "   <-- differs"
        ok &= diff <= args.tol
        print(f"{name:32s} max |grad| {scale:.3e}  max difference / max |grad| {diff:.2e}{flag}")
    print(f"{'PASS' if ok else 'FAIL'}: {len(grads)} gradients, worst relative difference {worst:.2e} (tol {args.tol:g})")
    sys.exit(0 if ok else 1)


def batch_of(pool, context):
    """ids and targets exactly as copper's make_batch (tasks/task.cpp): each example keeps its
    last context + 1 tokens, inputs are all but the last token, right-padded with 0; targets
    are -100 wherever nothing is counted."""
    n = len(pool)
    T = min(max(len(s) for s, _ in pool) - 1, context)
    ids = torch.zeros(n, T, dtype=torch.long)
    tgt = torch.full((n, T), -100, dtype=torch.long)
    for i, (s, m) in enumerate(pool):
        start = max(0, len(s) - (context + 1))
        for t in range(start, len(s) - 1):
            ids[i, t - start] = s[t]
            if m[t]:
                tgt[i, t - start] = s[t + 1]
    return ids, tgt


if __name__ == "__main__":
    main()
