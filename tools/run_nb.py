"""Execute notebooks in place and store their outputs (what the docs show), the way `nbdev_test` runs them.

Cells carrying a test flag from settings.ini (`#| slow`, `#| gpu`) or `#| eval: false` are skipped and keep the
outputs stored from their last real run, unless `--all` (flagged cells too) or `--flags slow` (those flags too).
Usage: `python tools/run_nb.py nbs/03_neighborhood.ipynb [more.ipynb] [--all | --flags slow]`; then `nbdev_clean`.
Stops with the failing cell's source at the first error, and then writes nothing.
"""
import argparse, os, re, sys, time
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.config import get_config

def _directives(src): return dict(re.findall(r'^#\|\s*([\w-]+:?)\s*(.*)$', src, re.M))

def run(path:Path, flags:set, run_all:bool, cells=()):
    nb = read_nb(path)
    def skip(cell):
        if cell.cell_type != 'code': return True
        d = _directives(cell.source)
        if d.get('eval:', '').strip().lower() == 'false': return True
        return not run_all and cell.idx_ not in cells and bool((set(d) & set(get_config().tst_flags.split())) - flags)
    t0, shell = time.time(), CaptureShell(path=path.parent)
    os.chdir(path.parent)
    for i, cell in enumerate(nb.cells):
        if skip(cell): continue
        shell.cell(cell)
        if shell.exc: sys.exit(f'{path.name}: cell {i} failed:\n{cell.source}\n{shell.exc!r}')
    write_nb(nb, path)
    print(f'{path.name}: executed in {time.time() - t0:.0f} s')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='+', type=Path)
    p.add_argument('--all', action='store_true', help='run flagged cells too')
    p.add_argument('--flags', nargs='*', default=[], help='test flags whose cells to run')
    p.add_argument('--cells', nargs='*', type=int, default=[], help='indices of flagged cells to run as well')
    a = p.parse_args()
    for nb in [n.resolve() for n in a.notebooks]: run(nb, set(a.flags), a.all, set(a.cells))
