"""The Python API against the CLI on a shared CPU: does `Trainer.fit` (and `sample`) pick its threads as the CLI does?

PyTorch starts with one thread per core. When another process keeps a core busy, each parallel operation waits for
its descheduled thread, and a small model can train many times slower than with one thread. The CLI picks its
threads (`auto_threads`: the cores not already busy); `Trainer.fit` and `sample` do the same through `cpu_threads`
unless the user chose a thread count. This script starts a busy helper process, waits for the load average to see
it, then times in fresh child processes:

- `Trainer.fit` with PyTorch's default threads (the library chooses),
- the same after `torch.set_num_threads(1)` (the user chooses one thread),
- `hdit-edu train` (the CLI) with the same settings,
- `sample` with default threads and with one thread.

    python benchmarks/bench_api_threads.py                 # 40 steps, batch 32, 32 px, the CLI's default model
    python benchmarks/bench_api_threads.py --no-helper     # the same on an idle machine

The target (issue: threads that work everywhere): default threads at most 1.5x the one-thread time.
This is a benchmark, not a test: numbers depend on the machine and on what else runs on it.
"""
import argparse, json, multiprocessing as mp, os, subprocess, sys, tempfile, time


def busy(stop):
    x = 0
    while not stop.is_set():
        for _ in range(100_000): x += 1


def child(kind, steps, one_thread):
    import torch
    if one_thread: torch.set_num_threads(1)
    from hdit_edu.data import openmoji_dataset, ImageDataset
    from hdit_edu.model import HDiT, small_hdit_config
    from hdit_edu.training import Trainer, TrainConfig
    from hdit_edu.diffusion import Denoiser
    from hdit_edu.sampling import sample
    torch.manual_seed(0)
    model = HDiT(small_hdit_config(32, num_classes=3))
    if kind == 'fit':
        data = ImageDataset(openmoji_dataset(32), 32, hflip=False)
        tr = Trainer(model, data, TrainConfig(out_dir=None, steps=steps, progress=False, sample_n=0))
        t0 = time.perf_counter(); tr.fit(); dt = time.perf_counter() - t0
        return dict(seconds=dt, images_per_s=steps * 32 / dt)
    t0 = time.perf_counter(); sample(Denoiser(model), 16, 32, steps=25, seed=0, class_cond=0); dt = time.perf_counter() - t0
    return dict(seconds=dt)


def _env():
    "This process's environment without a thread setting, so each child starts with PyTorch's default."
    return {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')}


def run_child(kind, steps, one_thread):
    code = f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import bench_api_threads as b; " \
           f"print(json.dumps(b.child({kind!r}, {steps}, {one_thread})))"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=_env())
    if r.returncode: raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_cli(steps):
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, '-m', 'hdit_edu.cli', 'train', '--out', d, '--steps', str(steps), '--minutes', '0',
               '--checkpoint-every', str(steps), '--quiet']
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=_env())
        if r.returncode: raise RuntimeError(r.stderr[-2000:])
        return dict(seconds=time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=40)
    p.add_argument('--no-helper', action='store_true', help='do not start the busy helper process')
    p.add_argument('--wait', type=float, default=75., help='seconds for the load average to see the helper')
    args = p.parse_args()
    stop = mp.Event()
    helper = None if args.no_helper else mp.Process(target=busy, args=(stop,), daemon=True)
    if helper: helper.start(); time.sleep(args.wait)
    load = ' '.join(f'{x:.2f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else 'n/a'
    print(f"{os.cpu_count()} cores; busy helper: {'no' if helper is None else 'yes'}; load average: {load}")
    try:
        fit_default, fit_one = run_child('fit', args.steps, False), run_child('fit', args.steps, True)
        cli = run_cli(args.steps)
        smp_default, smp_one = run_child('sample', 0, False), run_child('sample', 0, True)
    finally:
        if helper: stop.set(); helper.join(5)
    print(f"Trainer.fit {args.steps} steps, default threads: {fit_default['seconds']:6.1f} s "
          f"({fit_default['images_per_s']:.0f} img/s)")
    print(f"Trainer.fit {args.steps} steps, 1 thread set:    {fit_one['seconds']:6.1f} s "
          f"({fit_one['images_per_s']:.0f} img/s)")
    print(f"hdit-edu train {args.steps} steps (whole process): {cli['seconds']:6.1f} s")
    print(f"sample 16 x 32 px, 25 steps: default threads {smp_default['seconds']:.1f} s, 1 thread {smp_one['seconds']:.1f} s")
    print(f"ratio default / 1 thread: fit {fit_default['seconds'] / fit_one['seconds']:.2f}, "
          f"sample {smp_default['seconds'] / smp_one['seconds']:.2f} (target <= 1.5)")


if __name__ == '__main__':
    main()
