"""`na2d` forward+backward on a shared CPU: 2 threads against 1 thread while another process keeps one core busy.

PyTorch uses as many threads as there are cores. When another process occupies one of them, every parallel
operation waits for its descheduled thread, so a computation made of thousands of small operations can run many
times slower with 2 threads than with 1. This script starts a busy helper process (a pure-Python loop), then times
`na2d` forward+backward with 1 and with 2 threads, each in a fresh child process, and prints the ratio
(2 threads / 1 thread; below 1 means the second thread still helps, the target is at most 2).

    python benchmarks/bench_threads.py                    # 64x64 and 128x128 tokens, batch 1, 4 heads, head_dim 32
    python benchmarks/bench_threads.py --sizes 64 --backend gather --no-helper

This is a benchmark, not a test: numbers depend on the machine and on what else runs on it.
"""
import argparse, json, multiprocessing as mp, os, statistics, subprocess, sys, time


def busy(stop):
    "Keep one core busy until `stop` is set."
    x = 0
    while not stop.is_set():
        for _ in range(100_000): x += 1


def child(args):
    import torch
    torch.set_num_threads(args.threads)
    from hdit_edu.fast_attention import na2d
    s = args.sizes[0]
    g = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(args.batch, s, s, args.heads, args.head_dim, generator=g) for _ in range(4))
    for t in (q, k, v): t.requires_grad_()
    def run():
        na2d(q, k, v, args.kernel, backend=args.backend).backward(grad)
        for t in (q, k, v): t.grad = None
    run()                                                   # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter(); run(); times.append(time.perf_counter() - t0)
    print(json.dumps(dict(size=s, threads=args.threads, ms=1e3 * statistics.median(times), best_ms=1e3 * min(times))))


def measure(size, threads, args):
    cmd = [sys.executable, __file__, '--child', '--sizes', str(size), '--threads', str(threads),
           '--batch', str(args.batch), '--heads', str(args.heads), '--head-dim', str(args.head_dim),
           '--kernel', str(args.kernel), '--repeats', str(args.repeats), '--backend', args.backend]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f"child failed: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', type=int, nargs='+', default=[64, 128], help='token map side lengths')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--head-dim', type=int, default=32)
    p.add_argument('--kernel', type=int, default=7)
    p.add_argument('--repeats', type=int, default=5, help='timed calls per case (median reported)')
    p.add_argument('--backend', default='auto', help="na2d backend ('auto', 'gather', 'dense', ...)")
    p.add_argument('--no-helper', action='store_true', help='do not start the busy helper process')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--threads', type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child: return child(args)

    stop = mp.Event()
    helper = None if args.no_helper else mp.Process(target=busy, args=(stop,), daemon=True)
    if helper: helper.start(); time.sleep(0.5)
    load = ' '.join(f'{x:.2f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else 'n/a'
    print(f"na2d forward+backward, batch {args.batch}, {args.heads} heads, head_dim {args.head_dim}, kernel "
          f"{args.kernel}, float32, backend {args.backend!r}; {os.cpu_count()} cores, busy helper: "
          f"{'no' if helper is None else 'yes'}; load average at start: {load}")
    print(f"{'tokens':>14} | {'1 thread ms':>12} | {'2 threads ms':>12} | {'2/1 ratio':>9}")
    try:
        for s in args.sizes:
            one, two = measure(s, 1, args), measure(s, 2, args)
            print(f"{f'{s}x{s}':>14} | {one['ms']:12.1f} | {two['ms']:12.1f} | {two['ms'] / one['ms']:9.2f}", flush=True)
    finally:
        if helper: stop.set(); helper.join(5)


if __name__ == '__main__':
    main()
