"""Real-browser test of the editing widget: JupyterLab on localhost, driven by Playwright in Debian's chromium.

The same approach as tests/test_browser.py: copy the appendix notebook (without its `#| slow` cells) to a scratch
folder, open it in JupyterLab, run all cells, then use the widget as a reader does: click a cell of the brush grid
(the input picture must change at once), press Run, and assert that the result picture changed.
Screenshots go to `_screenshots/` (or $HDIT_SCREENSHOT_DIR). Skipped, with the reason, where chromium or
playwright is missing.
"""
import json, os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = 'appendix_editing_widget.ipynb'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']


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
    pytest.importorskip('playwright.sync_api')
    pytest.importorskip('jupyterlab')
    root = tmp_path_factory.mktemp('lab_editing')
    _copy_without_slow(ROOT / 'nbs' / NOTEBOOK, root / NOTEBOOK)
    port, token = _free_port(), 'hdit-edu-test'
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
        else: pytest.fail(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}")
        yield f'http://127.0.0.1:{port}', token
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()


def _src(page, selector):
    return page.evaluate("(s) => { const e = [...document.querySelectorAll(s)].pop(); return e ? e.src : null; }",
                         selector)


def test_editing_widget_responds_in_a_real_browser(lab):
    playwright = pytest.importorskip('playwright.sync_api')
    url, token = lab
    shots = Path(os.environ.get('HDIT_SCREENSHOT_DIR', ROOT / '_screenshots')); shots.mkdir(exist_ok=True)
    stem = Path(NOTEBOOK).stem
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={'width': 1500, 'height': 1000})
        # start the kernel through the REST API first, so JupyterLab opens the notebook with no kernel chooser
        req = urllib.request.Request(f'{url}/api/sessions?token={token}', method='POST',
                                     headers={'Content-Type': 'application/json'},
                                     data=json.dumps({'path': NOTEBOOK, 'name': NOTEBOOK, 'type': 'notebook',
                                                      'kernel': {'name': 'python3'}}).encode())
        urllib.request.urlopen(req, timeout=60)
        page.goto(f'{url}/lab/workspaces/{stem}/tree/{NOTEBOOK}?reset&token={token}')
        page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=120_000)
        page.wait_for_timeout(2000)
        if page.locator('.jp-Dialog').count():            # kernel chooser on first open: take the default
            page.locator('.jp-Dialog button.jp-mod-accept').click()
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return 1; }")
        try:  # execution really started: the first code cell gets a prompt number or a '*'
            page.wait_for_selector('.jp-CodeCell .jp-InputPrompt:not(:text-is("[ ]:"))', timeout=60_000)
            result = page.locator('img.hdit-editor-result').last
            result.wait_for(timeout=420_000)
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=300_000)
        except Exception:
            page.screenshot(path=str(shots / f'{stem}_failure.png'), full_page=True)
            raise
        errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]:has-text("Error")')
        assert errors.count() == 0, errors.first.inner_text()[:2000]
        # the widget of the display cell (the only editor shown on the page)
        out = page.locator('.jp-OutputArea-output:has(img.hdit-editor-result)').first
        out.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        pic, inp = out.locator('img.hdit-editor-result'), out.locator('img.widget-image').first
        before_pic, before_inp = pic.screenshot(), inp.screenshot()
        src_pic = pic.get_attribute('src')
        page.screenshot(path=str(shots / f'{stem}_before.png'))
        cell = out.locator('button[title="cell (0, 0)"]')
        assert 'mod-active' not in (cell.get_attribute('class') or '')
        cell.click()                                        # paint the top-left cell of the brush grid
        page.wait_for_function("(e) => e.classList.contains('mod-active')", arg=cell.element_handle(), timeout=30_000)
        page.wait_for_timeout(1500)
        after_inp = inp.screenshot()
        out.locator('button.widget-button:has-text("Run")').click()
        page.wait_for_function("([e, s]) => e.src !== s", arg=[pic.element_handle(), src_pic], timeout=120_000)
        page.wait_for_timeout(1500)
        after_pic = pic.screenshot()
        caption = out.locator('.widget-html:has-text("steps, seed")').last.inner_text()
        page.screenshot(path=str(shots / f'{stem}_after.png'))
        browser.close()
    assert after_inp != before_inp, 'painting a brush cell did not change the input picture'
    assert after_pic != before_pic, 'pressing Run did not change the result picture'
    assert '26% of the pixels' in caption, caption          # the centre (25%) plus one 8x8 cell (1.6%)
