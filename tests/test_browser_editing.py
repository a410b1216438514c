"""Real-browser test of the editing widget: JupyterLab on localhost, driven by Playwright in Debian's chromium.

The same approach as tests/test_browser.py: copy the appendix notebook (without its `#| slow` cells) to a scratch
folder, open it in JupyterLab, run all cells, then use the widget as a reader does: click a cell of the brush grid
(the input picture must change at once), press Run, and assert that the result picture changed.
Screenshots go to `_screenshots/` (or $HDIT_SCREENSHOT_DIR). Skipped, with the reason, where chromium or
playwright is missing.
"""
import os, sys
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser_util import ROOT, CHROMIUM, FLAGS, lab_server, open_and_run_all  # noqa: E402

NOTEBOOK = 'appendix_editing_widget.ipynb'
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    pytest.importorskip('playwright.sync_api')
    pytest.importorskip('jupyterlab')
    with lab_server(tmp_path_factory.mktemp('lab_editing'), [NOTEBOOK]) as server: yield server


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
        open_and_run_all(page, url, token, NOTEBOOK, shots)
        try:
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
