"""Shared pieces of the real-browser widget tests: a JupyterLab server on localhost with copies of notebooks (their
`#| slow` cells left out, so no saved work is touched), and opening one notebook there with every cell run."""
import json, os, shutil, socket, subprocess, sys, time, urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def copy_without_slow(src: Path, dst: Path):
    "Copy notebook `src` to `dst` without its `#| slow` cells and outputs, on the default Python kernel."
    nb = json.loads(src.read_text())
    nb['cells'] = [c for c in nb['cells']
                   if not (c['cell_type'] == 'code' and any(l.strip().startswith('#| slow') for l in c['source'][:5]))]
    for c in nb['cells']:
        if c['cell_type'] == 'code': c['outputs'], c['execution_count'] = [], None
    nb['metadata']['kernelspec'] = {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'}
    dst.write_text(json.dumps(nb))


@contextmanager
def lab_server(root: Path, notebooks):
    "JupyterLab serving copies of `notebooks` (names in nbs/) from `root`: yields `(url, token)`."
    for nb in notebooks: copy_without_slow(ROOT / 'nbs' / nb, root / nb)
    port, token = free_port(), 'hdit-edu-test'
    env = dict(os.environ, HF_DATASETS_OFFLINE='1', HF_HUB_OFFLINE='1', PYTHONPATH=str(ROOT))
    log = open(root / 'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}', '--allow-root',
                             '--LabApp.expose_app_in_browser=True', '--LabApp.news_url=',
                             f'--LabApp.workspaces_dir={root / "workspaces"}',
                             f'--LabApp.user_settings_dir={root / "settings"}',
                             '--ServerApp.disable_check_xsrf=True'], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f'http://127.0.0.1:{port}/api/status?token={token}', timeout=1); break
            except Exception: time.sleep(0.5)
        else: raise RuntimeError(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}")
        yield f'http://127.0.0.1:{port}', token
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()


def open_and_run_all(page, url, token, notebook, shots: Path):
    "Open `notebook` in its own reset workspace (kernel started first, so no chooser) and start running every cell."
    stem = Path(notebook).stem
    req = urllib.request.Request(f'{url}/api/sessions?token={token}', method='POST',
                                 headers={'Content-Type': 'application/json'},
                                 data=json.dumps({'path': notebook, 'name': notebook, 'type': 'notebook',
                                                  'kernel': {'name': 'python3'}}).encode())
    urllib.request.urlopen(req, timeout=60)
    page.goto(f'{url}/lab/workspaces/{stem}/tree/{notebook}?reset&token={token}')
    page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=120_000)
    page.wait_for_timeout(2000)
    if page.locator('.jp-Dialog').count():            # kernel chooser on first open: take the default
        page.locator('.jp-Dialog button.jp-mod-accept').click()
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return 1; }")
    try:  # execution really started: the first code cell gets a prompt number or a '*'
        page.wait_for_selector('.jp-CodeCell .jp-InputPrompt:not(:text-is("[ ]:"))', timeout=60_000)
    except Exception:
        page.screenshot(path=str(shots / f'{stem}_failure.png'), full_page=True)
        raise
