"""Time and peak memory of `hdit_edu.fast_attention.na2d` (forward, forward+backward) beside NATTEN's CPU forward.

Every measurement runs in a fresh Python process, so peak memory is not polluted by earlier cases: the child
resets the kernel's peak-RSS counter (/proc/self/clear_refs, falling back to getrusage's ru_maxrss), records the
resident memory after building its inputs, runs the operation once, and reports the growth of the peak over that
baseline. It then times `--repeats` further calls and reports the median.

    python benchmarks/bench_na2d.py                       # full table, saved to benchmarks/results_na2d.txt
    python benchmarks/bench_na2d.py --sizes 32 64 --json --no-save

This is a benchmark, not a test: numbers depend on the machine and on what else runs on it.
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, time, warnings
from pathlib import Path

CASES = ('na2d_fwd', 'na2d_fwd_bwd', 'natten_fwd')


def _rss_kib(field):
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith(field + ':'): return int(line.split()[1])
    except OSError: pass
    return None


def _reset_peak():
    "Reset the peak-RSS counter to the current RSS (Linux >= 4.0); False where that is not possible."
    try:
        Path('/proc/self/clear_refs').write_text('5')
        return _rss_kib('VmHWM') is not None
    except OSError: return False


def child(case, size, args):
    import torch
    torch.set_num_threads(args.threads)
    shape = (args.batch, size, size, args.heads, args.head_dim)
    g = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(shape, generator=g) for _ in range(4))
    if case == 'na2d_fwd_bwd':
        for t in (q, k, v): t.requires_grad_()
    if case == 'natten_fwd':
        warnings.filterwarnings('ignore')
        import natten.functional as nf
        def run(): return nf.na2d(q, k, v, kernel_size=args.kernel)
    else:
        from hdit_edu.fast_attention import na2d
        def run():
            out = na2d(q, k, v, args.kernel, backend=args.backend)
            if case == 'na2d_fwd_bwd':
                out.backward(grad)
                for t in (q, k, v): t.grad = None
            return out
    if _reset_peak():
        base = _rss_kib('VmRSS'); run(); peak = _rss_kib('VmHWM'); how = 'VmHWM'
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; run()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; how = 'ru_maxrss'
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter(); run(); times.append(time.perf_counter() - t0)
    print(json.dumps(dict(case=case, size=size, heads=args.heads, ms=1e3 * min(times),
                          ms_median=1e3 * statistics.median(times), peak_mib=(peak - base) / 1024, peak_via=how)))


def mem_available_bytes():
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemAvailable:'): return int(line.split()[1]) * 1024
    except OSError: pass
    return None


def run_case(case, size, args, heads=None):
    cmd = [sys.executable, __file__, '--child', case, '--sizes', str(size), '--batch', str(args.batch),
           '--heads', str(heads or args.heads), '--head-dim', str(args.head_dim), '--kernel', str(args.kernel),
           '--threads', str(args.threads), '--backend', args.backend, '--repeats', str(args.repeats if case != 'natten_fwd' else args.natten_repeats)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return dict(case=case, size=size, skipped=f"failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def header(args):
    import torch
    try:
        import natten; nv = natten.__version__
    except Exception: nv = 'not installed'
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines()
                   if l.startswith('model name'))
    except (OSError, StopIteration): pass
    load = ' '.join(f'{x:.2f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else 'n/a'
    return (f"na2d benchmark (backend {args.backend!r}): batch {args.batch}, {args.heads} heads, head_dim {args.head_dim}, kernel {args.kernel}, "
            f"float32, CPU ({cpu}, {os.cpu_count()} cores), {args.threads} threads\n"
            f"torch {torch.__version__}, natten {nv}, python {platform.python_version()}; load average at start: {load}\n"
            f"time: best of {args.repeats} calls after a first (memory-measured) call ({args.natten_repeats} for "
            f"NATTEN); memory: growth of peak RSS over the baseline after building the inputs, each case in a fresh "
            f"process; speed-up = NATTEN fwd time / na2d fwd time")


def table(rows, args):
    by = {(r['case'], r['size']): r for r in rows}
    cols = ['tokens', 'na2d fwd ms', 'fwd MiB', 'na2d fwd+bwd ms', 'fwd+bwd MiB', 'NATTEN fwd ms', 'NATTEN MiB',
            'speed-up']
    lines = [' | '.join(f'{c:>15}' for c in cols)]
    notes = []
    for s in args.sizes:
        def get(case, key):
            r = by.get((case, s))
            if r is None: return '-'
            if 'skipped' in r: return 'skipped'
            if r.get('scaled_from_heads'): return f"{r[key]:.0f}*" if key == 'ms' else f"{r[key]:.0f} (1 head)"
            return f"{r[key]:.1f}"
        f, n = by.get(('na2d_fwd', s)), by.get(('natten_fwd', s))
        speed = (f"{n['ms'] / f['ms']:.0f}x" + ('*' if n.get('scaled_from_heads') else '')
                 if f and n and 'ms' in f and 'ms' in n else '-')
        cells = [f'{s}x{s}={s*s}', get('na2d_fwd', 'ms'), get('na2d_fwd', 'peak_mib'), get('na2d_fwd_bwd', 'ms'),
                 get('na2d_fwd_bwd', 'peak_mib'), get('natten_fwd', 'ms'), get('natten_fwd', 'peak_mib'), speed]
        lines.append(' | '.join(f'{c:>15}' for c in cells))
        notes += [f"  {r['case']} at {s}x{s}: {r['skipped']}" for c in CASES if (r := by.get((c, s))) and 'skipped' in r]
        notes += [f"  * NATTEN at {s}x{s} would not fit in memory with {args.heads} heads: it ran with "
                  f"{r['scaled_from_heads']} head ({r['measured_ms']:.0f} ms, peak +{r['measured_mib']:.0f} MiB) and "
                  f"its time is scaled by {args.heads} (heads are independent, so time grows linearly with them)"
                  for r in [by.get(('natten_fwd', s))] if r and r.get('scaled_from_heads')]
    return '\n'.join(lines + (['notes:'] + notes if notes else []))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', type=int, nargs='+', default=[32, 64, 128, 256], help='token map side lengths')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--head-dim', type=int, default=32)
    p.add_argument('--kernel', type=int, default=7)
    p.add_argument('--threads', type=int, default=1, help='torch threads (1: robust on a shared machine)')
    p.add_argument('--backend', default='torch', help="na2d backend: 'torch' (what 'auto' runs on CPU), 'gather', "
                   "'dense', 'tiled'")
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--natten-repeats', type=int, default=2)
    p.add_argument('--no-natten', action='store_true', help='skip NATTEN')
    p.add_argument('--natten-mem-fraction', type=float, default=0.5,
                   help='skip NATTEN where its estimated peak exceeds this fraction of MemAvailable')
    p.add_argument('--json', action='store_true', help='also print one JSON line per measurement')
    p.add_argument('--no-save', action='store_true')
    p.add_argument('--out', default=str(Path(__file__).with_name('results_na2d.txt')))
    p.add_argument('--child', choices=CASES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child: return child(args.child, args.sizes[0], args)

    try:
        import natten  # noqa: F401
        have_natten = not args.no_natten
        why_no_natten = 'disabled with --no-natten'
    except Exception as e:
        have_natten, why_no_natten = False, f'NATTEN not importable ({e})'
    rows = []
    # NATTEN's CPU path (unfused Flex Attention) materialises N x N scores and a mask per head: its memory grows
    # with N^2. Estimate the next size from the last measured one (bytes per score pair), starting from 16 B.
    bytes_per_pair = 16.0
    for s in args.sizes:
        for case in CASES:
            if case == 'natten_fwd':
                n2 = args.batch * args.heads * (s * s) ** 2
                est, avail = bytes_per_pair * n2, mem_available_bytes()
                if not have_natten:
                    rows.append(dict(case=case, size=s, skipped=why_no_natten)); continue
                if avail is not None and est > args.natten_mem_fraction * avail:
                    if est / args.heads <= args.natten_mem_fraction * avail and args.heads > 1:
                        r = run_case(case, s, args, heads=1)        # one head fits: measure it, scale by heads
                        if 'ms' in r:
                            r.update(scaled_from_heads=1, measured_ms=r['ms'], measured_mib=r['peak_mib'],
                                     ms=r['ms'] * args.heads)      # memory stays the 1-head measurement
                        rows.append(r)
                        if args.json: print(json.dumps(r), flush=True)
                        else: print(f"  {case:>13} {s}x{s}: " + (r.get('skipped') or f"{r['measured_ms']:.1f} ms, "
                                    f"{r['peak_mib']:.1f} MiB with 1 head"), file=sys.stderr, flush=True)
                        continue
                    rows.append(dict(case=case, size=s, skipped=f"estimated peak {est / 2**30:.1f} GiB "
                                     f"(N^2 scores) > {args.natten_mem_fraction:.0%} of available "
                                     f"{avail / 2**30:.1f} GiB")); continue
            r = run_case(case, s, args)
            rows.append(r)
            if case == 'natten_fwd' and 'peak_mib' in r and s >= 48:   # calibrate on the largest size that ran
                bytes_per_pair = r['peak_mib'] * 2**20 / n2
            if args.json: print(json.dumps(r), flush=True)
            else: print(f"  {case:>13} {s}x{s}: " + (r.get('skipped') or f"{r['ms']:.1f} ms, {r['peak_mib']:.1f} MiB"),
                        file=sys.stderr, flush=True)
    text = header(args) + '\n\n' + table(rows, args) + '\n'
    print(text)
    if not args.no_save:
        Path(args.out).write_text(text)
        print(f'saved to {args.out}', file=sys.stderr)


if __name__ == '__main__':
    main()
