"""Training speed of the paper's HDiT-B/4 at 256 px on a GPU: images per second and peak memory, eager and compiled.

One training step = EDM-preconditioned loss (soft-min-snr weighting, cosine-interpolated noise levels) on a batch of
random images, backward, AdamW step (k-diffusion's parameter groups), under bf16 autocast. For each mode ('eager',
'compile' = `torch.compile(model)`), the first `--warmup` steps (compilation included) are timed separately, then
`--steps` steps give images per second. Peak memory is `torch.cuda.max_memory_allocated` over the timed steps.
The last column compares the achieved training FLOP/s (6 x forward multiply-accumulates per image, the paper's way of
counting) with `--peak-tflops` (the chip's dense bf16 peak; 989 for an H100 SXM, ~790 measured on an H200).

    python benchmarks/bench_train_gpu.py                         # HDiT-B/4, 256 px, batch 32, eager and compile
    python benchmarks/bench_train_gpu.py --modes compile --steps 30
    python benchmarks/bench_train_gpu.py --dry-run               # a tiny model on the CPU: checks the script runs

This is a benchmark, not a test: it prints a table.
"""
import argparse, statistics, sys, time, warnings


def build(args, device):
    import torch
    from hdit_edu.model import HDiT, hdit_b4, small_hdit_config
    from hdit_edu.training import make_optimizer
    cfg = (small_hdit_config(args.size, attention='neighborhood') if args.dry_run else
           hdit_b4(args.size, num_classes=args.classes))
    torch.manual_seed(0)
    model = HDiT(cfg).to(device)
    return model, make_optimizer(model)


def step_fn(args, device, model, opt, compiled):
    import torch
    from hdit_edu.diffusion import Denoiser, rand_cosine_interpolated
    denoiser = Denoiser(torch.compile(model) if compiled else model)   # the loss calls the (compiled) network
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=not args.no_autocast)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    cond = dict(class_cond=torch.randint(0, args.classes, (args.batch,), device=device)) if args.classes and not args.dry_run else {}

    def step():
        noise = torch.randn_like(x)
        sigma = rand_cosine_interpolated((args.batch,), image_d=args.size, device=device)
        with torch.autocast(**amp):
            loss = denoiser.loss(x, noise, sigma, **cond).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def measure(mode, args, device):
    import torch
    model, opt = build(args, device)
    step = step_fn(args, device, model, opt, compiled=mode == 'compile')
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(args.warmup): step()
    sync(); warm = time.perf_counter() - t0
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(args.steps):
        t0 = time.perf_counter(); step(); sync(); ts.append(time.perf_counter() - t0)
    res = dict(mode=mode, warm_s=warm, img_s=args.batch / statistics.median(ts),
               params=sum(p.numel() for p in model.parameters()))
    if device.type == 'cuda': res['peak_gib'] = torch.cuda.max_memory_allocated() / 2 ** 30
    try:
        from hdit_edu.flops import count_flops
        res['gflop_per_img'] = 6 * count_flops(model, (3, args.size, args.size)) / 1e9
    except Exception: pass
    del model, opt, step
    if device.type == 'cuda': torch.cuda.empty_cache()
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--size', type=int, default=256, help='image size in pixels')
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--classes', type=int, default=0, help='class-conditional with this many classes (0: none)')
    p.add_argument('--modes', nargs='+', default=['eager', 'compile'], choices=['eager', 'compile'])
    p.add_argument('--warmup', type=int, default=5, help='untimed steps first (compilation happens here)')
    p.add_argument('--steps', type=int, default=20, help='timed steps')
    p.add_argument('--no-autocast', action='store_true', help='train in float32')
    p.add_argument('--peak-tflops', type=float, default=989.0, help="the chip's dense bf16 peak, for the last column")
    p.add_argument('--dry-run', action='store_true', help='a tiny neighborhood-attention model on the CPU, eager')
    args = p.parse_args(argv)
    import torch
    if args.dry_run:
        args.size, args.batch, args.warmup, args.steps, args.no_autocast = 32, 2, 1, 2, True
        args.modes = [m for m in args.modes if m == 'eager'] or ['eager']
        device = torch.device('cpu')
    elif not torch.cuda.is_available():
        sys.exit("bench_train_gpu.py needs a CUDA GPU (use --dry-run to check the script on a CPU).")
    else:
        device = torch.device('cuda')
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    warnings.filterwarnings('ignore')
    from hdit_edu.fast_attention import describe_backend
    name = torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU (dry run)'
    print(f"{'small NA model' if args.dry_run else 'HDiT-B/4'} at {args.size} px, batch {args.batch}, "
          f"{'float32' if args.no_autocast else 'bf16 autocast'}, AdamW on {name}; torch {torch.__version__}\n"
          f"{describe_backend(device)}\n")
    print(f"{'mode':>8} | {'params':>8} | {'warm-up s':>9} | {'img/s':>8} | {'peak GiB':>8} | {'GFLOP/img':>9} | "
          f"{'% of peak':>9}")
    for mode in args.modes:
        try: r = measure(mode, args, device)
        except Exception as e:
            print(f"{mode:>8} | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True); continue
        gf = r.get('gflop_per_img')
        util = f"{100 * gf * r['img_s'] / (args.peak_tflops * 1e3):.1f}" if gf and device.type == 'cuda' else '-'
        print(f"{mode:>8} | {r['params'] / 1e6:7.1f}M | {r['warm_s']:9.1f} | {r['img_s']:8.1f} | "
              f"{r.get('peak_gib', float('nan')):8.2f} | {gf or float('nan'):9.1f} | {util:>9}", flush=True)


if __name__ == '__main__':
    main()
