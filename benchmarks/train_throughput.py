"""Training throughput of a config: examples/s, step time, FLOPs and MFU (+ a PyTorch side-by-side).

  python benchmarks/train_throughput.py --config configs/clip.py:tiny [--steps 20] [--config.k=v ...]
  python benchmarks/train_throughput.py --config configs/clip.py:base --torch   # also time PyTorch
  python benchmarks/train_throughput.py --config configs/clip.py:base --sweep model.attention_impl=auto,xla
  python benchmarks/train_throughput.py --config configs/clip.py:tiny --profile /tmp/trace   # + op breakdown

Times the jitted, donated train step on synthetic uint8 images / random tokens of the
config's shapes (input pipeline excluded, so this measures the model + optimizer). With
--torch it builds the same two-tower in PyTorch (open_clip when importable, else a plain
torch.nn two-tower of identical dims, with the ViT or CLIP's ResNet as image tower, GroupNorm as
in vljax) and prints the ratio. --sweep KEY=V1,V2 times one row per
value in the same process (side by side); with --rounds N the rows are compiled first and timed in N
interleaved rounds of --steps steps (best round per row), so a drift in the machine's speed hits every row
alike; --profile DIR traces a few steps of the first row with jax.profiler and prints where the step's time
goes (benchmarks/trace_summary.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def prepare_vljax(cfg, profile_dir: str | None = None, profile_steps: int = 3):
    """Config -> (run, info): the compiled, warmed-up train step; run(steps) times `steps` steps -> seconds per step.

    info holds the FLOPs (analytic when the method has a count, else XLA's), the peak and the device. With
    profile_dir, a few extra steps are traced there (before any timing) and the step's HLO is written next to them.
    """
    import flax.linen as nn
    import jax

    from vljax import sharding as shard_lib
    from vljax.train import flops as flops_lib
    from vljax.train.loop import Experiment

    exp = Experiment(cfg, "/tmp/vljax_bench")
    state, shardings = exp.create_state()
    bs, res, L = int(cfg.train.batch_size), int(cfg.data.world.resolution), int(cfg.data.max_len)
    rng = np.random.default_rng(0)
    host = {"image": rng.integers(0, 255, (bs, res, res, 3), dtype=np.uint8),
            "text": rng.integers(4, exp.tokenizer.vocab_size, (bs, L)).astype(np.int32)}
    step = exp.jit_step(shardings)
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        batch = shard_lib.host_to_global(host, exp.mesh)
        compiled = step.lower(state, batch).compile()
    xla_flops = flops_lib.compiled_flops(compiled)
    analytic_flops = flops_lib.analytic_step_flops(cfg, exp.method, jax.device_count())
    holder = {"state": state}

    def run(steps: int) -> float:
        # NOTE: the step donates its state, so each call continues from the last one's output.
        with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
            t0 = time.perf_counter()
            for _ in range(steps):
                holder["state"], m = compiled(holder["state"], batch)
            jax.block_until_ready(m["loss"])
        return (time.perf_counter() - t0) / max(steps, 1)

    run(3)
    if profile_dir:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        (Path(profile_dir) / "step.hlo.txt").write_text(compiled.as_text())
        try:
            with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
                run(profile_steps)
        except Exception as e:  # noqa: BLE001 - a missing profiler backend must not lose the timings
            print(f"profile failed ({type(e).__name__}: {e}); timings are unaffected", flush=True)
    # NOTE: what the trainer logs (flops_lib.step_flops): the analytic count when the method has one.
    flops = analytic_flops if analytic_flops is not None else xla_flops
    peak = flops_lib.peak_flops_per_device(override=cfg.train.get("peak_flops_per_device"))
    info = dict(bs=bs, flops=flops, xla_flops=xla_flops, analytic=analytic_flops is not None, peak=peak,
                device=jax.devices()[0].device_kind, n=jax.device_count())
    return run, info


def _row(info: dict, dt: float) -> dict:
    """Prepared info x seconds per step -> the row's step time, examples/s and MFU."""
    mfu = (info["flops"] / dt / info["peak"]) if (info["flops"] and info["peak"]) else None
    return dict(info, step_s=dt, ex_s=info["bs"] / dt, mfu=mfu)


def time_vljax(cfg, steps: int, profile_dir: str | None = None, profile_steps: int = 3):
    """Config -> row dict (step_s, ex_s, flops, mfu, device, ...) from `steps` timed steps after a warm-up."""
    run, info = prepare_vljax(cfg, profile_dir, profile_steps)
    return _row(info, run(steps))


def torch_two_tower(cfg, vocab: int):
    """Same dims as the vljax two-tower: open_clip's CLIP when importable, else plain torch.nn."""
    import torch
    from torch import nn as tnn

    m = cfg.model
    res, L = int(cfg.data.world.resolution), int(cfg.data.max_len)
    img, txt = dict(m.image), dict(m.text)
    resnet = img.get("arch", "vit") == "resnet"
    if resnet:
        from vljax.models.resnet import feature_channels, resnet_dims

        img = {**img, **resnet_dims(img.get("variant"), layers=img.get("layers"), width=img.get("width"),
                                    num_heads=img.get("num_heads"), output_dim=img.get("output_dim"))}
        if img.get("pool", "attn") != "attn":
            raise SystemExit("--torch builds the ResNet with CLIP's attention pool only "
                             "(config.model.image.pool='attn')")
        img_out = img["output_dim"] or feature_channels(int(img["width"]), len(img["layers"]))
    elif img.get("variant"):
        from vljax.models.vit import vit_config

        img = {**vit_config(img["variant"]), **{k: v for k, v in img.items() if k != "variant"}}
    try:
        import open_clip  # noqa: F401
        from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

        if resnet:
            # NOTE: open_clip's ModifiedResNet (BatchNorm), whose pool outputs embed_dim directly.
            vision = CLIPVisionCfg(layers=tuple(img["layers"]), width=int(img["width"]), image_size=res,
                                   head_width=int(feature_channels(int(img["width"]), len(img["layers"])))
                                   // int(img["num_heads"]))
        else:
            vision = CLIPVisionCfg(layers=img["depth"], width=img["width"], head_width=img["width"] // img["num_heads"],
                                   mlp_ratio=img["mlp_dim"] / img["width"], patch_size=int(img["patch_size"][0]),
                                   image_size=res)
        model = CLIP(int(m.embed_dim), vision,
                     CLIPTextCfg(context_length=L, vocab_size=vocab, width=txt["width"], heads=txt["num_heads"],
                                 layers=txt["depth"], mlp_ratio=txt["mlp_dim"] / txt["width"]))
        return model, "open_clip"
    except ImportError:
        pass

    def encoder(width, depth, heads, mlp):
        layer = tnn.TransformerEncoderLayer(width, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                            norm_first=True)
        return tnn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def gn(c):
        from vljax.nn.norms import group_norm_groups

        return tnn.GroupNorm(group_norm_groups(c), c)

    class Bottleneck(tnn.Module):
        """CLIP's bottleneck (avg-pool downsampling) with GroupNorm, as vljax/models/resnet.py."""

        def __init__(self, c_in, planes, stride):
            super().__init__()
            out = 4 * planes
            self.branch = tnn.Sequential(
                tnn.Conv2d(c_in, planes, 1, bias=False), gn(planes), tnn.ReLU(),
                tnn.Conv2d(planes, planes, 3, padding=1, bias=False), gn(planes), tnn.ReLU(),
                tnn.AvgPool2d(stride) if stride > 1 else tnn.Identity(),
                tnn.Conv2d(planes, out, 1, bias=False), gn(out))
            self.down = (tnn.Sequential(tnn.AvgPool2d(stride) if stride > 1 else tnn.Identity(),
                                        tnn.Conv2d(c_in, out, 1, bias=False), gn(out))
                         if stride > 1 or c_in != out else tnn.Identity())

        def forward(self, x):
            return torch.relu(self.branch(x) + self.down(x))

    class ResNetTower(tnn.Module):
        """[B, 3, H, W] -> [B, out]: three-conv stem, bottleneck stages, CLIP's attention pool."""

        def __init__(self):
            super().__init__()
            w = int(img["width"])
            stem = []
            for c_in, c_out, stride in ((3, w // 2, 2), (w // 2, w // 2, 1), (w // 2, w, 1)):
                stem += [tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), gn(c_out), tnn.ReLU()]
            layers, c_in = [], w
            for i, n in enumerate(img["layers"]):
                for j in range(n):
                    layers.append(Bottleneck(c_in, w * 2**i, 2 if (i > 0 and j == 0) else 1))
                    c_in = 4 * w * 2**i
            self.body = tnn.Sequential(*stem, tnn.AvgPool2d(2), *layers)
            grid = res // (4 * 2 ** (len(img["layers"]) - 1))
            self.pos = tnn.Parameter(torch.randn(grid * grid + 1, c_in) / c_in**0.5)
            self.attn = tnn.MultiheadAttention(c_in, int(img["num_heads"]), batch_first=True)
            self.proj = tnn.Linear(c_in, img_out)

        def forward(self, x):
            x = self.body(x).flatten(2).transpose(1, 2)
            x = torch.cat([x.mean(1, keepdim=True), x], 1) + self.pos
            return self.proj(self.attn(x[:, :1], x, x, need_weights=False)[0][:, 0])

    class TwoTower(tnn.Module):
        def __init__(self):
            super().__init__()
            if resnet:
                self.resnet, w = ResNetTower(), img_out
            else:
                w, patch = img["width"], int(img["patch_size"][0])
                self.patch = tnn.Conv2d(3, w, patch, patch)
                self.pos = tnn.Parameter(torch.zeros(1, (res // patch) ** 2, w))
                self.vit = encoder(w, img["depth"], img["num_heads"], img["mlp_dim"])
                self.ln_i = tnn.LayerNorm(w)
            self.tok = tnn.Embedding(vocab, txt["width"])
            self.tpos = tnn.Parameter(torch.zeros(1, L, txt["width"]))
            self.txt = encoder(txt["width"], txt["depth"], txt["num_heads"], txt["mlp_dim"])
            self.ln_t = tnn.LayerNorm(txt["width"])
            no_proj = m.get("img_proj_kind", "linear") == "none"
            self.pi = tnn.Identity() if no_proj else tnn.Linear(w, int(m.embed_dim), bias=False)
            self.pt = tnn.Linear(txt["width"], int(m.embed_dim), bias=False)
            self.scale = tnn.Parameter(torch.tensor(2.6593))

        def forward(self, x, t):
            if resnet:
                x = self.resnet(x)
            else:
                x = self.ln_i(self.vit(self.patch(x).flatten(2).transpose(1, 2) + self.pos)).mean(1)
            pad = t == 0
            y = self.ln_t(self.txt(self.tok(t) + self.tpos, src_key_padding_mask=pad))
            last = (~pad).sum(1) - 1
            y = y[torch.arange(len(t)), last]
            return (tnn.functional.normalize(self.pi(x), dim=-1), tnn.functional.normalize(self.pt(y), dim=-1),
                    self.scale.exp())

    return TwoTower(), "torch.nn two-tower (open_clip not importable)"


def time_torch(cfg, vocab: int, steps: int):
    import torch

    torch.manual_seed(0)
    model, name = torch_two_tower(cfg, vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    bs, res, L = int(cfg.train.batch_size), int(cfg.data.world.resolution), int(cfg.data.max_len)
    x = torch.randn(bs, 3, res, res)
    t = torch.randint(4, vocab, (bs, L))
    labels = torch.arange(bs)

    def step():
        out = model(x, t)
        img, txt, scale = out[0], out[1], out[2]
        logits = scale * img @ txt.T
        loss = (torch.nn.functional.cross_entropy(logits, labels)
                + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return dict(step_s=dt, ex_s=bs / dt, name=name, threads=torch.get_num_threads())


def _parse_sweep(text: str) -> tuple[str, list[str]]:
    """'model.attention_impl=auto,xla' -> ('model.attention_impl', ['auto', 'xla'])."""
    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise SystemExit(f"--sweep wants KEY=V1,V2,..., got {text!r}")
    return key, values.split(",")


def main(argv=None):
    from vljax.config import parse_cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--torch", action="store_true", help="also time the PyTorch two-tower")
    p.add_argument("--sweep", default="", help="KEY=V1,V2: one vljax row per config value, side by side")
    p.add_argument("--profile", default="", help="trace the first row's steps into this dir and print the breakdown")
    p.add_argument("--profile_steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1,
                   help="> 1: compile every --sweep row first, then time them in this many interleaved rounds")
    args, overrides = parse_cli(p, argv)
    from vljax.config import load_config

    key, values = _parse_sweep(args.sweep) if args.sweep else (None, [None])
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    rows = []
    jax_name = "vljax (jax " + __import__("jax").__version__ + ")"
    cfgs = [load_config(args.config, overrides + ([] if key is None else [f"--config.{key}={v}"])) for v in values]
    first_cfg = cfgs[0]

    def show(i: int, row: dict) -> None:
        if i == 0:
            print(f"config {args.config}  batch {first_cfg.train.batch_size}  devices {row['n']} x {row['device']}"
                  + (f"  (best of {args.rounds} interleaved rounds of {args.steps} steps)" if args.rounds > 1 else ""))
            print(f"{'impl':<44} {'step (ms)':>10} {'examples/s':>11} {'ratio':>7} {'MFU':>7}")
        label = jax_name if key is None else f"vljax {key}={values[i]}"
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
        ratio = row["ex_s"] / rows[0]["ex_s"]
        print(f"{label[:44]:<44} {row['step_s'] * 1e3:>10.1f} {row['ex_s']:>11.1f} {ratio:>7.2f} {mfu:>7}", flush=True)

    if args.rounds == 1:
        for i, cfg in enumerate(cfgs):
            rows.append(time_vljax(cfg, args.steps, args.profile if (args.profile and i == 0) else None,
                                   args.profile_steps))
            show(i, rows[-1])  # NOTE: rows print as they finish, so a run cut short still reports what it measured
    else:
        # NOTE: every row compiled first, then timed round-robin: a drift of the machine's speed (other jobs, clocks)
        # hits each row alike, where back-to-back runs favour whichever goes first. Each row keeps its best round.
        prepared = [prepare_vljax(cfg, args.profile if (args.profile and i == 0) else None, args.profile_steps)
                    for i, cfg in enumerate(cfgs)]
        best = [float("inf")] * len(prepared)
        for k in range(args.rounds):
            for i, (run, _) in enumerate(prepared):
                best[i] = min(best[i], run(args.steps))
            print(f"# round {k + 1}/{args.rounds}: " + " ".join(f"{1e3 * b:.1f}" for b in best), file=sys.stderr,
                  flush=True)
        for i, (_, info) in enumerate(prepared):
            rows.append(_row(info, best[i]))
            show(i, rows[-1])
    cfg, r = first_cfg, rows[0]
    if args.torch:
        from vljax.data.world import World

        vocab = len(World(cfg.data.world).vocab)
        t = time_torch(cfg, vocab, args.steps)
        print(f"{t['name'][:44]:<44} {t['step_s'] * 1e3:>10.1f} {t['ex_s']:>11.1f} {t['ex_s'] / r['ex_s']:>7.2f}")
        print(f"(ratio = examples/s relative to the first vljax row; torch threads {t['threads']})")
    source = "analytic" if r["analytic"] else "XLA cost analysis"
    if r["mfu"] is None:
        print("MFU n/a: no peak FLOP/s known for this device (set --config.train.peak_flops_per_device)")
    print(f"FLOPs/step/device {r['flops'] or float('nan'):.3e} ({source}; XLA cost analysis "
          f"{r['xla_flops'] or float('nan'):.3e})")
    if args.profile:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from trace_summary import print_summary, summarize

        print(f"\nprofile of the first row ({args.profile_steps} steps traced into {args.profile}):")
        try:
            hlo = Path(args.profile) / "step.hlo.txt"
            print_summary(summarize(args.profile, args.profile_steps, hlo.read_text() if hlo.exists() else None))
        except FileNotFoundError as e:
            print(e)


if __name__ == "__main__":
    main()
