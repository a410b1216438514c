"""What `import hdit_edu` costs beside `import torch`, and which heavy libraries it loads (it should load none).

Each figure is the best of `--reps` fresh interpreters (`python -c "import X"`), so nothing is cached in-process;
the operating system's file cache is warm after the first run. The libraries that only some functions need
(datasets, pandas, pyarrow, matplotlib, accelerate, ipywidgets) are imported inside those functions.

    python benchmarks/bench_import.py            # best of 5
    python benchmarks/bench_import.py --reps 10

This is a benchmark, not a test: the times depend on the machine and on what else runs on it.
"""
import argparse, subprocess, sys

HEAVY = ('datasets', 'pandas', 'pyarrow', 'matplotlib', 'accelerate', 'ipywidgets')
CODE = """import sys, time
t = time.perf_counter()
{stmt}
dt = time.perf_counter() - t
print(dt, ','.join(m for m in {heavy!r} if m in sys.modules))"""


def best_time(stmt, reps, pre=''):
    "Best wall time of `stmt` over `reps` fresh interpreters (after `pre`, untimed), and the heavy modules loaded."
    runs = []
    for _ in range(reps):
        out = subprocess.run([sys.executable, '-c', pre + '\n' + CODE.format(stmt=stmt, heavy=HEAVY)],
                             capture_output=True, text=True, check=True).stdout.split()
        runs.append((float(out[0]), out[1] if len(out) > 1 else ''))
    return min(runs)


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=5)
    a = p.parse_args()
    rows = [('import torch', best_time('import torch', a.reps)),
            ('import hdit_edu', best_time('import hdit_edu', a.reps)),
            ('import hdit_edu (torch already loaded)', best_time('import hdit_edu', a.reps, pre='import torch')),
            ('import hdit_edu.cli (hdit-edu --help)', best_time('import hdit_edu.cli', a.reps))]
    print(f"{'statement':42} {'best of ' + str(a.reps):>10}   heavy libraries loaded")
    for name, (t, heavy) in rows: print(f"{name:42} {t * 1e3:8.0f} ms   {heavy or 'none'}")
