"""Neighborhood attention on a GPU: forward, forward+backward and peak memory of every backend, side by side.

Rows: hdit_edu's `na2d` with backend 'gather' (the pure-PyTorch offset loop), 'tiled' (masked SDPA on tiles),
'flex' (torch's flex_attention with the neighborhood block mask, compiled once), NATTEN's default `na2d` and its
flex backend compiled (when NATTEN is installed), and global attention through `scaled_dot_product_attention`
(flash attention over all tokens: the reference a 7x7 window should not lose to).

    python benchmarks/bench_na2d_gpu.py                        # 64², 128², 256² tokens, batch 8, 6 heads, d 64, bf16
    python benchmarks/bench_na2d_gpu.py --sizes 64 --impls flex sdpa
    python benchmarks/bench_na2d_gpu.py --dry-run              # tiny shapes on the CPU: checks the script runs

Times are medians of `--iters` calls after `--warmup` calls (the first call compiles); forward is timed as in
training (inputs that require grad). Peak memory is `torch.cuda.max_memory_allocated` during one forward+backward,
above what the inputs already hold. Compiled flex_attention is not autotuned (torch.compile's default mode).
This is a benchmark, not a test: it prints a table.
"""
import argparse, statistics, sys, time, warnings

IMPLS = ('gather', 'tiled', 'flex', 'natten', 'natten-flex', 'sdpa')


def timer(device):
    import torch
    if device.type == 'cuda':
        def run(fn, warmup, iters):
            for _ in range(warmup): fn()
            torch.cuda.synchronize()
            ts = []
            for _ in range(iters):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
            return statistics.median(ts)
    else:
        def run(fn, warmup, iters):
            for _ in range(warmup): fn()
            ts = []
            for _ in range(iters):
                t0 = time.perf_counter(); fn(); ts.append(1e3 * (time.perf_counter() - t0))
            return statistics.median(ts)
    return run


def make_attention(impl, kernel, device):
    "A function (q, k, v) -> out on `[batch, height, width, heads, head_dim]`, or a string saying why not."
    import torch.nn.functional as F
    from hdit_edu.fast_attention import na2d
    if impl in ('gather', 'tiled', 'flex'):
        return lambda q, k, v: na2d(q, k, v, kernel, backend=impl)
    if impl == 'sdpa':
        def sdpa(q, k, v):
            b, h, w, nh, d = q.shape
            q_, k_, v_ = (t.reshape(b, h * w, nh, d).transpose(1, 2) for t in (q, k, v))
            return F.scaled_dot_product_attention(q_, k_, v_).transpose(1, 2).reshape(q.shape)
        return sdpa
    try: import natten.functional as nf
    except Exception as e: return f'NATTEN not installed ({type(e).__name__})'
    if impl == 'natten': return lambda q, k, v: nf.na2d(q, k, v, kernel_size=kernel)
    return lambda q, k, v: nf.na2d(q, k, v, kernel_size=kernel, backend='flex-fna', torch_compile=True)


def run_case(impl, size, args, device, dtype, run):
    import torch
    fn = make_attention(impl, args.kernel, device)
    if isinstance(fn, str): return dict(note=fn)
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v, grad = [torch.randn(args.batch, size, size, args.heads, args.head_dim, generator=g, device=device,
                                 dtype=dtype) for _ in range(4)]
    for t in (q, k, v): t.requires_grad_(device.type == 'cuda' or impl != 'flex')   # flex: no CPU backward
    train = q.requires_grad
    def fwd(): return fn(q, k, v)
    def fwd_bwd():
        out = fn(q, k, v)
        torch.autograd.grad(out, (q, k, v), grad)
    res = {}
    try:
        t0 = time.perf_counter()
        fwd_bwd() if train else fwd()                                  # compiles where it compiles
        res['first_s'] = time.perf_counter() - t0
        res['fwd'] = run(fwd, args.warmup, args.iters)
        if train:
            res['fwd_bwd'] = run(fwd_bwd, args.warmup, args.iters)
            if device.type == 'cuda':
                torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                fwd_bwd(); torch.cuda.synchronize()
                res['peak_gib'] = (torch.cuda.max_memory_allocated() - base) / 2 ** 30
    except Exception as e:                                             # out of memory, unsupported shape, ...
        res['note'] = f'failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}'
    finally:
        q = k = v = grad = None                                        # free the memory before the next case
        if device.type == 'cuda': torch.cuda.empty_cache()
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', type=int, nargs='+', default=[64, 128, 256], help='token map side lengths')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--heads', type=int, default=6)
    p.add_argument('--head-dim', type=int, default=64)
    p.add_argument('--kernel', type=int, default=7)
    p.add_argument('--dtype', default='bfloat16', choices=['bfloat16', 'float16', 'float32'])
    p.add_argument('--impls', nargs='+', default=list(IMPLS), choices=IMPLS)
    p.add_argument('--sdpa-max', type=int, default=128, help='largest map side for global SDPA (N² work)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--iters', type=int, default=10)
    p.add_argument('--dry-run', action='store_true', help='tiny shapes on the CPU, float32: checks the script runs')
    args = p.parse_args(argv)
    import torch
    if args.dry_run:
        args.sizes, args.batch, args.heads, args.head_dim, args.dtype = [12, 16], 1, 2, 16, 'float32'
        args.warmup, args.iters = 1, 2
        args.impls = [i for i in args.impls if i not in ('natten', 'natten-flex')]
        device = torch.device('cpu')
    elif not torch.cuda.is_available():
        sys.exit("bench_na2d_gpu.py needs a CUDA GPU (use --dry-run to check the script on a CPU).")
    else: device = torch.device('cuda')
    dtype, run = getattr(torch, args.dtype), timer(device)
    warnings.filterwarnings('ignore')
    from hdit_edu.fast_attention import describe_backend
    name = torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU (dry run)'
    try:
        import natten; nv = natten.__version__
    except Exception: nv = 'not installed'
    print(f"na2d on {name}: batch {args.batch}, {args.heads} heads, head_dim {args.head_dim}, kernel {args.kernel}, "
          f"{args.dtype}; torch {torch.__version__}, natten {nv}\n{describe_backend(device)}\n"
          f"median of {args.iters} calls after {args.warmup} warm-up calls; 'first' = first call (compile)\n")
    cols = ('tokens', 'impl', 'fwd ms', 'fwd+bwd ms', 'peak GiB', 'first s', 'note')
    widths = (9, 12, 9, 11, 9, 8, 0)
    print(' | '.join(c.rjust(w) for c, w in zip(cols, widths)))
    t_start = time.perf_counter()
    for s in args.sizes:
        for impl in args.impls:
            if impl == 'sdpa' and s > args.sdpa_max: continue
            r = run_case(impl, s, args, device, dtype, run)
            f = lambda key, fmt: format(r[key], fmt) if key in r else '-'
            cells = (f'{s}x{s}', impl, f('fwd', '.2f'), f('fwd_bwd', '.2f'), f('peak_gib', '.3f'),
                     f('first_s', '.1f'), r.get('note', ''))
            print(' | '.join(str(c).rjust(w) for c, w in zip(cells, widths)), flush=True)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == '__main__':
    main()
