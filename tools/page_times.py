"""How long each page takes: reading (estimated from its words and visible code) and running (measured).

Reading: prose at 200 words a minute and visible code at 10 lines a minute (rates stated in the results file, so the
home page can say what its estimate assumes). Running: every cell the docs' tests run (cells flagged `slow`/`gpu` or
`eval: false` skipped, as CI skips them), executed in a fresh kernel in a temporary folder, timed; the number of
skipped slow cells is counted. Writes `nbs/results/page_times.json`, which the home page reads.
The stored run: `OMP_NUM_THREADS=1 python tools/page_times.py` (one thread, like CI's notebook tests).
"""
import argparse, json, os, platform, re, shutil, subprocess, sys, tempfile
from pathlib import Path

NBS = Path(__file__).resolve().parents[1] / 'nbs'
HIDDEN = re.compile(r"^#\|\s*(hide\b|echo:\s*false|include:\s*false|exporti?\b(?!s))", re.M)
FLAGGED = re.compile(r"^#\|\s*(slow|gpu)\s*$|^#\|\s*eval:\s*false", re.M)
WORDS_PER_MIN, CODE_LINES_PER_MIN = 200, 10

def pages():
    course = sorted([*NBS.glob('[0-9][0-9]_*.ipynb'), *NBS.glob('[0-9][0-9][a-z]_*.ipynb')])
    return [*course, *sorted(NBS.glob('appendix_*.ipynb')), NBS / 'index.ipynb']   # the home page reads the others

def reading(nb):
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    src = lambda c: ''.join(c['source'])
    prose = ' '.join(re.sub(r'\]\([^)]*\)|[$`*#|>]', ' ', src(c)) for c in cells if c['cell_type'] == 'markdown')
    words = len(re.findall(r'\w+', prose))
    code = sum(len([ln for ln in src(c).splitlines() if not ln.startswith('#|')]) for c in cells
               if c['cell_type'] == 'code' and not HIDDEN.search(src(c)))
    slow = sum(1 for c in cells if c['cell_type'] == 'code' and re.search(r'^#\|\s*(slow|gpu)\s*$', src(c), re.M))
    return dict(words=words, code_lines=code, slow_cells=slow,
                reading_min=words / WORDS_PER_MIN + code / CODE_LINES_PER_MIN)

RUNNER = """
import sys, time, re
from execnb.nbio import read_nb
from execnb.shell import CaptureShell
nb, t0 = read_nb(sys.argv[1]), time.time()
shell = CaptureShell(path='.')
for cell in nb.cells:
    if cell.cell_type != 'code' or re.search(sys.argv[2], cell.source, re.M): continue
    shell.cell(cell)
    if shell.exc: sys.exit(f'failed: {shell.exc!r}')
print(time.time() - t0)
"""

def running(nb):
    "Seconds to run the page's unflagged cells in a fresh kernel, in a copy of nbs/ (the page reads results/, images/)."
    with tempfile.TemporaryDirectory() as d:
        work = Path(d) / 'nbs'
        shutil.copytree(NBS, work, ignore=shutil.ignore_patterns('_*', '.ipynb_checkpoints'))
        out = subprocess.run([sys.executable, '-c', RUNNER, nb.name, FLAGGED.pattern], cwd=work,
                             capture_output=True, text=True)
    if out.returncode: raise SystemExit(f'{nb.name}: {out.stdout[-500:]}{out.stderr[-2000:]}')
    return float(out.stdout.strip().splitlines()[-1])

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--only', nargs='*', help='pages to (re)measure; the others keep their stored times')
    p.add_argument('--out', default=str(NBS / 'results' / 'page_times.json'))
    a = p.parse_args()
    out = Path(a.out)
    res = json.loads(out.read_text()) if out.exists() else {}
    res.update(command=('OMP_NUM_THREADS=1 python tools/page_times.py ' + ' '.join(sys.argv[1:])).strip(),
               rates=dict(words_per_min=WORDS_PER_MIN, code_lines_per_min=CODE_LINES_PER_MIN),
               environment=dict(python=platform.python_version(), threads=os.environ.get('OMP_NUM_THREADS')),
               pages=res.get('pages', {}))
    for nb in pages(): res['pages'][nb.stem] = res['pages'].get(nb.stem, {}) | reading(nb)
    for nb in pages():
        row = res['pages'][nb.stem]
        if not a.only or nb.stem in a.only:
            row['running_s'] = running(nb)
            print(f"{nb.stem}: reading {row['reading_min']:.0f} min, running {row['running_s']:.0f} s", flush=True)
        res['pages'][nb.stem] = row
        out.write_text(json.dumps(res, indent=1) + '\n')
