"""Run notebooks top to bottom, every cell (slow ones too), the way a learner's Jupyter or Colab runs them.

Copies only `nbs/` into a temporary folder (no clone beside it: no tests/, benchmarks/ or runs/), executes each
named notebook there with nbclient and a fresh kernel, and fails if any cell raises. Meant for an environment with
only the base install of hdit_edu (plus nbclient and ipykernel to run notebooks at all).
Usage: `python tools/run_notebooks_base.py 00_patching 03_neighborhood ...` from the repository root.
"""
import shutil, sys, tempfile, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

def main(names):
    src = Path(__file__).resolve().parents[1] / 'nbs'
    work = Path(tempfile.mkdtemp(prefix='hdit_nbs_')) / 'nbs'
    shutil.copytree(src, work, ignore=shutil.ignore_patterns('_quarto.yml', '.ipynb_checkpoints'))
    failed = []
    for name in names:
        path = work / (name if name.endswith('.ipynb') else name + '.ipynb')
        nb, t0 = nbformat.read(path, as_version=4), time.time()
        try:
            NotebookClient(nb, timeout=1200, kernel_name='python3', resources={'metadata': {'path': str(work)}}).execute()
            print(f'ok   {path.name}: every cell ran, {time.time() - t0:.0f} s', flush=True)
        except CellExecutionError as e:
            failed.append(path.name)
            print(f'FAIL {path.name} after {time.time() - t0:.0f} s:\n{str(e)[-3000:]}', flush=True)
    print(f'base-install notebooks: {len(names) - len(failed)} of {len(names)} ran without error')
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
