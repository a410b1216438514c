"""Real-browser test of the notebooks' widgets: JupyterLab on localhost, driven by Playwright in Debian's chromium.

For each widget notebook: copy it (without its `#| slow` cells, as CI runs it) to a scratch folder so no saved work is
touched, open it in JupyterLab, run all cells, move one slider of the widget with the keyboard, and assert that the
widget's picture changed. Screenshots go to `_screenshots/` (or $HDIT_SCREENSHOT_DIR).
Skipped, with the reason, where chromium or playwright is missing; `.ci/run` installs chromium so CI runs it.
"""
import os, sys
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser_util import ROOT, CHROMIUM, FLAGS, lab_server, open_and_run_all  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]

# notebook, label of the slider to move (the last widget in the notebook that has it is used)
CASES = [('03_neighborhood.ipynb', 'query col'), ('appendix_trajectory_widget.ipynb', 'step'),
         ('appendix_prompt_widget.ipynb', 'guidance')]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    with lab_server(tmp_path_factory.mktemp('lab'), [nb for nb, *_ in CASES]) as server: yield server


@pytest.mark.parametrize('notebook,slider_label', CASES)
def test_widget_responds_in_a_real_browser(lab, notebook, slider_label):
    playwright = pytest.importorskip('playwright.sync_api')
    url, token = lab
    shots = Path(os.environ.get('HDIT_SCREENSHOT_DIR', ROOT / '_screenshots')); shots.mkdir(exist_ok=True)
    stem = Path(notebook).stem
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={'width': 1400, 'height': 1000})
        open_and_run_all(page, url, token, notebook, shots)
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


def test_prompt_widget_draws_a_typed_prompt(lab):
    "Type a new prompt into the prompt widget, press Enter: the samples and maps are drawn again."
    playwright = pytest.importorskip('playwright.sync_api')
    url, token = lab
    shots = Path(os.environ.get('HDIT_SCREENSHOT_DIR', ROOT / '_screenshots')); shots.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={'width': 1400, 'height': 1000})
        open_and_run_all(page, url, token, 'appendix_prompt_widget.ipynb', shots)
        box = page.locator('.widget-text:has(.widget-label:text-is("prompt")) input').last
        box.wait_for(timeout=420_000)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=300_000)
        pic = box.locator('xpath=ancestor::div[contains(@class,"jp-OutputArea-output")][1]')
        pic.scroll_into_view_if_needed(); page.wait_for_timeout(1000)
        before = pic.screenshot()
        box.fill('blue heart'); box.press('Enter')
        page.wait_for_timeout(1500)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
        page.wait_for_timeout(2000)
        after = pic.screenshot()
        page.screenshot(path=str(shots / 'appendix_prompt_widget_typed.png'))
        browser.close()
    assert after != before, 'the picture did not change when a new prompt was typed'
