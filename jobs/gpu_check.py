"""One-GPU check, Ray-free (needs torch, transformers, numba; no Ray, DeepSpeed or MLflow): the paper-size
model in bf16 on one CUDA device, and the Mamba CUDA path against the CPU numba kernels.

    python jobs/gpu_check.py [--batch 64] [--steps 10] [--size 224x224] [--device cuda] [--small]
        [--backbone {vit,cnn,efficientnet-lite0,mobilenetv2}]

1. Builds the paper's architecture (ViT-B/16 and BERT-base configs, random init; BDAM 4 blocks; 2-layer
   bidirectional Mamba fusion, width 256, d_state 16, d_conv 4) and trains it at ``--batch`` under
   ``torch.autocast(bfloat16)`` (fp32 master weights, the loss maths in fp32): forward, the paper's losses,
   GradNorm (its per-task norms included) and an Adam step. Prints samples/s over ``--steps`` timed steps and
   the peak allocated memory.
2. Says which Mamba path ran: the mamba-ssm / causal-conv1d CUDA kernels when they import, else transformers'
   PyTorch path (allowed here and said so; training refuses it unless ``model.fusion.allow_slow_kernels``).
3. Runs one fp32 Mamba mixer and one bidirectional layer with the same weights and inputs (padded rows
   included) through the CPU numba kernels and through the device path; prints the largest relative
   difference of outputs and input gradients. Tolerance 1e-4 relative to the output's largest magnitude
   (fp32 scans in different orders: the library's reference agrees with ours to ~1e-7 on CPU).

``--device cpu --small`` runs the same code on a CPU with a small model (the project's tests do).
Exits non-zero when a comparison is outside the tolerance or a step fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from reid.models.presets import BERT_BASE, VIT_B16

TOLERANCE = 1e-4
PAPER = {"vision": VIT_B16, "text": BERT_BASE, "bdam": {"blocks": 4, "heads": 8}, "width": 256}
SMALL = {
    "vision": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
               "patch_size": 16},
    "text": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "vocab_size": 30522, "max_position_embeddings": 128},
    "bdam": {"blocks": 1, "heads": 2}, "width": 32,
}


BACKBONES = ("vit", "cnn", "efficientnet-lite0", "mobilenetv2")


def build(arch: dict, size: tuple[int, int], text_length: int, backbone: str = "vit"):
    """The model of ``arch`` through the project's one build call; ``backbone`` other than ``vit`` replaces the ViT
    by that convolutional backbone, its tokens as wide as the ViT's."""
    import json

    from reid.config import load_config
    from reid.models.factory import create_model

    vision = [f"model.vision_config={json.dumps(arch['vision'])}"]
    width = arch["vision"]["hidden_size"]
    if backbone == "cnn":
        vision = [f"model.vision_config={{model_type: cnn, hidden_size: {width}}}"]
    elif backbone != "vit":
        vision = [f"model.vision_name_or_path=pkg:{backbone}", f"model.vision_config={{hidden_size: {width}}}"]
    config = load_config(None, [
        f"data.image_size=[{size[0]},{size[1]}]", f"data.max_text_length={text_length}", *vision,
        f"model.text_config={json.dumps(arch['text'])}", "model.text_pooling=cls", "model.embed_dim=256",
        "model.dropout=0.1", f"model.bdam={json.dumps({**arch['bdam'], 'enabled': True})}",
        f"model.fusion={{kind: mamba, layers: 2, width: {arch['width']}, d_state: 16, d_conv: 4, "
        "allow_slow_kernels: true}",
    ])
    return create_model(config)


def batch(n: int, size: tuple[int, int], length: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    pids = torch.arange(n) // 4
    out = {"images": torch.randint(0, 256, (n, 3, *size), generator=g, dtype=torch.uint8), "pids": pids}
    for prefix in ("caption", "id_desc", "clo_desc"):
        out[f"{prefix}_ids"] = torch.randint(1000, 30000, (n, length), generator=g)
        out[f"{prefix}_mask"] = torch.ones(n, length, dtype=torch.long)
    out["has_id_desc"] = out["has_clo_desc"] = torch.ones(n, dtype=torch.bool)
    return {k: v.to(device) for k, v in out.items()}


def train_steps(model, data: dict, steps: int, device: torch.device) -> tuple[float, float, str]:
    """``(samples/s, peak MiB, Mamba path)`` of ``steps`` timed bf16-autocast training steps (2 untimed first)."""
    from reid.losses.config import GradNormConfig, LossConfig
    from reid.losses.objective import compute_losses, create_balancer
    from reid.models.mamba import MambaMixerLayer

    loss_cfg = LossConfig()
    balancer = create_balancer(loss_cfg, GradNormConfig()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3)
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = 0.0
    for step in range(steps + 2):
        if step == 2:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            outputs = model(data)
        losses = compute_losses(outputs, data, loss_cfg)
        total = balancer.weighted_loss(losses)
        total.backward(retain_graph=balancer.will_update())
        balancer.update(losses, model.shared_parameters())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        del outputs, losses, total
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    probe = torch.empty(1, 1, 1, device=device)
    return steps * len(data["pids"]) / seconds, peak, MambaMixerLayer.path_for(probe)


def compare_paths(device: torch.device) -> list[tuple[str, float]]:
    """Largest relative differences (outputs, input gradients) between the CPU kernels and ``device``'s path."""
    from reid.models.mamba import BidirectionalMamba, MambaMixerLayer

    torch.manual_seed(0)
    rows = []
    x = torch.randn(4, 274, 256)
    mask = torch.ones(4, 274, dtype=torch.bool)
    mask[1, 200:] = False
    mask[3, 230:] = False
    for name, module in (("mixer", MambaMixerLayer(256, d_state=16, d_conv=4, allow_slow=True)),
                         ("bidirectional", BidirectionalMamba(256, d_state=16, d_conv=4, allow_slow=True))):
        outputs, grads = [], []
        for where in (torch.device("cpu"), device):
            layer = module.to(where)
            inp = x.to(where).requires_grad_()
            out = layer(inp, mask.to(where)) if name == "bidirectional" else layer(inp)
            out = out * mask.to(where)[..., None]
            (grad,) = torch.autograd.grad(out.square().sum(), [inp])
            outputs.append(out.detach().cpu())
            grads.append(grad.cpu())
        for what, (a, b) in (("output", outputs), ("input grad", grads)):
            rows.append((f"{name} {what}", float((a - b).abs().max() / b.abs().max())))
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", default="224x224")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="a small model (a CPU run of this script's code)")
    parser.add_argument("--backbone", choices=BACKBONES, default="vit",
                        help="the image backbone (vit: the paper's ViT-B/16 architecture)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu check: no CUDA device here (use --device cpu --small to run this script's code on a CPU)")
        return 2
    size = tuple(int(v) for v in args.size.split("x"))
    model = build(SMALL if args.small else PAPER, size, 77, args.backbone).to(device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    rate, peak, path = train_steps(model, batch(args.batch, size, 77, device), args.steps, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    note = "" if path != "torch-fallback" else " (mamba-ssm kernels missing: transformers' slow PyTorch path)"
    print(f"gpu check on {name}: {args.backbone} backbone, {params:.1f}M parameters, {size[0]}x{size[1]}, "
          f"batch {args.batch}, bf16 autocast, "
          f"GradNorm on: {rate:.1f} samples/s, peak memory {peak / 1024:.2f} GiB, Mamba path {path}{note}")
    worst = 0.0
    for label, diff in compare_paths(device):
        worst = max(worst, diff)
        print(f"  cpu numba kernels vs {device.type} path, {label}: max relative difference {diff:.2e}")
    ok = worst <= TOLERANCE
    print(f"gpu check {'passed' if ok else 'FAILED'} (tolerance {TOLERANCE:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
