"""Real-browser test of the notebooks' widgets: JupyterLab on localhost, driven by Playwright in Debian's chromium.

For each widget notebook: copy it (without its `#| slow` cells, as CI runs it) to a scratch folder so no saved work is
touched, open it in JupyterLab, run all cells, move one slider of the widget with the keyboard, and assert that the
widget's picture changed. Screenshots go to `_screenshots/` (or $HDIT_SCREENSHOT_DIR).
Skipped, with the reason, where chromium or playwright is missing; `.ci/run` installs chromium so CI runs it.
"""
import json, os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']

# notebook, label of the slider to move (the last widget in the notebook that has it is used)
CASES = [('03_neighborhood.ipynb', 'query col'), ('appendix_trajectory_widget.ipynb', 'step')]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _copy_without_slow(src: Path, dst: Path):
    nb = json.loads(src.read_text())
    nb['cells'] = [c for c in nb['cells']
                   if not (c['cell_type'] == 'code' and any(l.strip().startswith('#| slow') for l in c['source'][:5]))]
    for c in nb['cells']:
        if c['cell_type'] == 'code': c['outputs'], c['execution_count'] = [], None
    nb['metadata']['kernelspec'] = {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'}
    dst.write_text(json.dumps(nb))


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp('lab')
    for nb, *_ in CASES: _copy_without_slow(ROOT / 'nbs' / nb, root / nb)
    port, token = _free_port(), 'hdit-edu-test'
    env = dict(os.environ, HF_DATASETS_OFFLINE='1', HF_HUB_OFFLINE='1', PYTHONPATH=str(ROOT))
    log = open(root / 'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}', '--allow-root',
                             '--LabApp.expose_app_in_browser=True', '--LabApp.news_url=',
                             f'--LabApp.workspaces_dir={root / "workspaces"}', f'--LabApp.user_settings_dir={root / "settings"}',
                             '--ServerApp.disable_check_xsrf=True'], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f'http://127.0.0.1:{port}/api/status?token={token}', timeout=1); break
            except Exception: time.sleep(0.5)
        else: pytest.fail(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}")
        yield f'http://127.0.0.1:{port}', token
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()


@pytest.mark.parametrize('notebook,slider_label', CASES)
def test_widget_responds_in_a_real_browser(lab, notebook, slider_label):
    playwright = pytest.importorskip('playwright.sync_api')
    url, token = lab
    shots = Path(os.environ.get('HDIT_SCREENSHOT_DIR', ROOT / '_screenshots')); shots.mkdir(exist_ok=True)
    stem = Path(notebook).stem
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={'width': 1400, 'height': 1000})
        # start the notebook's kernel through the REST API first, so JupyterLab opens it with no kernel chooser
        req = urllib.request.Request(f'{url}/api/sessions?token={token}', method='POST',
                                     headers={'Content-Type': 'application/json'},
                                     data=json.dumps({'path': notebook, 'name': notebook, 'type': 'notebook',
                                                      'kernel': {'name': 'python3'}}).encode())
        urllib.request.urlopen(req, timeout=60)
        # a workspace of its own, reset: only this notebook open, and it is the active one
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
        # the last live widget in the notebook that has this slider
        slider = page.locator(f'.widget-slider:has(.widget-label:text-is("{slider_label}"))').last
        try: slider.wait_for(timeout=420_000)
        except Exception:
            page.screenshot(path=str(shots / f'{stem}_failure.png'), full_page=True)
            raise
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=300_000)
        errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]:has-text("Error")')
        assert errors.count() == 0, errors.first.inner_text()[:2000]
        # the whole output of the widget's cell: its pictures, plots and readouts
        pic = slider.locator('xpath=ancestor::div[contains(@class,"jp-OutputArea-output")][1]')
        pic.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        before = pic.screenshot()
        page.screenshot(path=str(shots / f'{stem}_before.png'))
        value_before = slider.locator('.widget-readout').inner_text()
        slider.locator('.noUi-handle').focus()
        for _ in range(3): page.keyboard.press('ArrowRight')
        page.wait_for_timeout(1000)
        if slider.locator('.widget-readout').inner_text() == value_before:  # it was at its maximum: go the other way
            for _ in range(3): page.keyboard.press('ArrowLeft')
        page.wait_for_function("(v) => { const r = [...document.querySelectorAll('.widget-slider')].filter(s => (s.querySelector('.widget-label') || {}).innerText === v[0]).pop(); return r && r.querySelector('.widget-readout').innerText !== v[1]; }",
                               arg=[slider_label, value_before], timeout=30_000)
        page.wait_for_timeout(500)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
        page.wait_for_timeout(1500)
        after = pic.screenshot()
        page.screenshot(path=str(shots / f'{stem}_after.png'))
        value_after = slider.locator('.widget-readout').inner_text()
        browser.close()
    assert value_after != value_before, 'the slider did not move'
    assert after != before, f'the picture did not change when {slider_label!r} went from {value_before} to {value_after}'
