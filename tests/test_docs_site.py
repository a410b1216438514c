"""The offline docs site (`python tools/docs_offline.py` builds `_site_offline/`, CI runs it before the tests).

A reader opens these pages offline: every local link must resolve, nothing may load from the network, no directive,
attribute syntax, widget repr or prompt may leak into the text, the maths must be typeset by the vendored MathJax, and
the source of (nearly) every public definition of the teaching modules must be on its notebook's page.
The site is built once here when it is missing or older than the notebooks or the tool.
"""
import importlib.util, json, re, shutil, subprocess, sys
from pathlib import Path

import pytest

import bs4
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
SITE, NBS, TOOL = ROOT / '_site_offline', ROOT / 'nbs', ROOT / 'tools' / 'docs_offline.py'
spec = importlib.util.spec_from_file_location('docs_offline', TOOL)
docs = importlib.util.module_from_spec(spec); spec.loader.exec_module(docs)
CHROMIUM = next((p for p in ('/usr/bin/chromium', *map(shutil.which, ('chromium', 'google-chrome', 'chromium-browser')))
                 if p and Path(p).exists()), None)
NETWORK = re.compile(r'^\s*(https?:)?//', re.I)


def _stale():
    marker = SITE / '.built'
    if not marker.exists(): return True
    t = marker.stat().st_mtime
    inputs = [*NBS.glob('*.ipynb'), NBS / 'styles.css', TOOL, docs.CSS]
    return any(p.exists() and p.stat().st_mtime > t for p in inputs)


@pytest.fixture(scope='session')
def pages():
    "{stem: parsed page} of the built site."
    if _stale():
        r = subprocess.run([sys.executable, str(TOOL)], cwd=ROOT, capture_output=True, text=True)
        print(r.stdout[-3000:])
    assert (SITE / 'index.html').exists(), 'the offline site was not built'
    return {p.stem: docs.parse_page(p) for p in sorted(SITE.glob('*.html'))}


def _notebook_stems():
    return sorted(p.stem for p in NBS.glob('*.ipynb'))


def _sidebar_order():
    "Page stems in nbs/sidebar.yml's order (custom_sidebar = True: the file is committed, not generated)."
    import yaml
    contents = yaml.safe_load((NBS / 'sidebar.yml').read_text())['website']['sidebar']['contents']
    return [Path(c).stem for c in contents]


def test_sidebar_lists_the_appendix_in_the_home_pages_order_and_titles():
    "The appendix in the sidebar comes in the home page's order, and each page's title is the home page's name for it."
    import re
    idx = json.loads((NBS / 'index.ipynb').read_text())
    text = '\n'.join(''.join(c['source']) for c in idx['cells'] if c['cell_type'] == 'markdown')
    table = text[text.index('| appendix | what | module |'):].split('\n\n')[0]
    home = re.findall(r'\| \[([^\]]+)\]\((appendix_\w+)\.ipynb\)', table)
    assert [stem for _, stem in home] == [s for s in _sidebar_order() if s.startswith('appendix_')]
    for name, stem in home:
        title = ''.join(json.loads((NBS / f'{stem}.ipynb').read_text())['cells'][0]['source']).splitlines()[0]
        assert title.lower() == f'# appendix: {name}'.lower(), (stem, title)


def test_every_notebook_has_a_page_in_reading_order(pages):
    stems = _notebook_stems()
    assert sorted(pages) == stems
    order = _sidebar_order()                                 # the home page, the course, then the appendix
    assert sorted(order) == stems                             # the sidebar lists every page once
    for stem, soup in pages.items():
        nav = [a['href'] for a in soup.select('nav.sidebar ol.pages > li > a')]
        assert nav == [f'{s}.html' for s in order], stem
        assert soup.select_one('nav.sidebar li.current > a')['href'] == f'{stem}.html'
        i = order.index(stem)
        prev_, next_ = soup.select_one('nav.pager a.prev'), soup.select_one('nav.pager a.next')
        assert (prev_['href'] if prev_ else None) == (f'{order[i-1]}.html' if i > 0 else None), stem
        assert (next_['href'] if next_ else None) == (f'{order[i+1]}.html' if i + 1 < len(order) else None), stem
        assert soup.title.get_text().strip() and soup.select_one('h1.title').get_text().strip()


def _local_urls(soup):
    for t in soup.find_all(True):
        for attr in ('href', 'src'):
            url = t.get(attr)
            if not url or url.startswith(('#', 'data:', 'mailto:', 'javascript:')): continue
            if re.match(r'^[a-z][\w+.-]*:', url, re.I) or url.startswith('//'): continue
            yield t.name, url


def test_no_broken_local_links(pages):
    broken, n = [], 0
    for stem, soup in pages.items():
        for tag, url in _local_urls(soup):
            n += 1
            path = url.split('#')[0].split('?')[0]
            if not (SITE / path).is_file(): broken.append(f'{stem}.html: <{tag}> {url}')
    assert n > 14 * 16, f'only {n} local links: the sidebar alone has 15 per page'
    assert not broken, '\n'.join(broken)


def test_notebook_links_and_images_point_to_the_site(pages):
    hrefs = [a.get('href', '') for soup in pages.values() for a in soup.find_all('a')]
    assert not [h for h in hrefs if re.search(r'\.ipynb(#|$)', h) and not NETWORK.match(h)], 'links to .ipynb left'
    index_links = {a.get('href') for a in pages['index'].select('main a')}
    assert {f'{s}.html' for s in _notebook_stems() if s != 'index'} <= index_links, 'the home page links every notebook'
    for soup in pages.values():
        for img in soup.select('main img'):
            src = img['src']
            assert src.startswith('data:') or NETWORK.match(src) or (SITE / src).is_file(), src


def _text_outside(soup, *selectors):
    "The text of a page without scripts, styles, comments and the elements matching `selectors`."
    skip = {id(t) for sel in ('script', 'style', *selectors) for t in soup.select(sel)}
    out, stack = [], [soup]
    while stack:
        node = stack.pop()
        if isinstance(node, bs4.element.Comment): continue
        if isinstance(node, bs4.element.NavigableString): out.append(str(node)); continue
        if id(node) not in skip: stack.extend(reversed(node.contents))
    return ''.join(out)


def test_no_leaked_directives_attributes_widget_reprs_or_prompts(pages):
    leaks = []
    for stem, soup in pages.items():
        for pre in soup.select('div.cell-input pre'):
            leaks += [f'{stem}: {l.strip()}' for l in pre.get_text().splitlines() if l.lstrip().startswith('#|')]
        text = _text_outside(soup, 'div.cell-input')
        for pat in ('{target=', 'source{', 'VBox(children', 'HBox(children', 'IntSlider(', 'Output(', 'Layout('):
            if pat in text: leaks.append(f'{stem}: {pat!r}')
        leaks += [f'{stem}: prompt {m.group(0)!r}' for m in re.finditer(r'\b(In|Out)\s?\[[\d ]*\]:', text)]
        prose = _text_outside(soup, 'div.cell-input', 'pre', 'code')
        leaks += [f'{stem}: {pat!r} in {prose[max(0, prose.index(pat) - 40):prose.index(pat) + 40]!r}'
                  for pat in ('#|', '{#', '{.', ':::') if pat in prose]
    assert not leaks, '\n'.join(leaks)


def test_hidden_inputs_leave_no_empty_code_boxes(pages):
    for stem, soup in pages.items():
        for box in soup.select('div.cell-input'):
            assert box.get_text().strip(), f'{stem}: an empty code box'
        assert not soup.select('.prompt, .jp-InputPrompt, .jp-OutputPrompt, .input_prompt'), stem


def test_nothing_loads_from_the_network(pages):
    loads = []
    for stem, soup in pages.items():
        for t in soup.find_all(['script', 'link', 'img', 'iframe', 'source', 'audio', 'video', 'embed', 'object']):
            for attr in ('src', 'href', 'data'):
                if t.name == 'a' or (t.name == 'link' and attr != 'href'): continue
                if NETWORK.match(t.get(attr) or ''): loads.append(f'{stem}: <{t.name} {attr}={t[attr][:80]}>')
        for s in soup.find_all(['script', 'style']):
            if re.search(r'''(url\(\s*['"]?|@import\s+['"]?|src\s*=\s*['"])(https?:)?//''', s.get_text()):
                loads.append(f'{stem}: a {s.name} pulls from the network')
    for css in SITE.glob('*.css'):
        if re.search(r'''(url\(\s*['"]?|@import\s+['"]?)(https?:)?//''', css.read_text()): loads.append(css.name)
    assert not loads, '\n'.join(loads)


_MATH = re.compile(r'\$\$.+?\$\$|(?<![\\$])\$[^$\n]+?\$', re.S)


def test_maths_is_left_to_the_local_mathjax(pages):
    "Every page loads the vendored MathJax, and the raw `$...$` maths of the notebooks sits where MathJax looks for it."
    js = SITE / 'mathjax' / 'tex-chtml-full.js'
    assert js.is_file() and (SITE / 'mathjax' / 'output' / 'chtml' / 'fonts' / 'woff-v2' / 'MathJax_Main-Regular.woff').is_file()
    n = 0
    for stem, soup in pages.items():
        srcs = [s.get('src') for s in soup.find_all('script') if s.get('src')]
        assert 'mathjax/tex-chtml-full.js' in srcs, stem
        config = ' '.join(s.get_text() for s in soup.find_all('script') if not s.get('src'))
        assert re.search(r"inlineMath:\s*\[\['\$', '\$'\]", config), stem
        # MathJax skips these elements; every formula of the notebook's prose must be found outside them
        text = re.sub(r'\s+', ' ', _text_outside(soup, 'noscript', 'textarea', 'pre', 'code'))
        nb = json.loads((NBS / f'{stem}.ipynb').read_text(encoding='utf-8'))
        for c in nb['cells']:
            if c['cell_type'] != 'markdown': continue
            src = re.sub(r'`[^`\n]*`', '', ''.join(c['source']))  # maths inside inline code is code
            src = re.sub(r'^(```|~~~).*?^\1', '', src, flags=re.M | re.S)
            for m in _MATH.findall(src):
                n += 1
                assert re.sub(r'\s+', ' ', m) in text, f'{stem}: {m!r} is not where MathJax typesets it'
    assert n > 50, f'only {n} formulas found in the notebooks'


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_mathjax_typesets_offline_in_chromium(pages):
    page = SITE / '07_diffusion.html'
    r = subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                        '--virtual-time-budget=10000', '--dump-dom', page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    dom = r.stdout
    assert dom.count('<mjx-container') > 20, f'MathJax did not typeset 07_diffusion.html: {r.stderr[-1000:]}'
    assert '<mjx-merror' not in dom, 'a formula failed to typeset'


def test_source_coverage_of_the_teaching_modules(pages):
    "The source of >= 95% of the public functions and classes of the teaching modules is on their pages."
    shown, total, missing = docs.source_coverage(SITE, ROOT / 'hdit_edu', NBS, parsed=pages)
    print(f'source on the pages: {shown} of {total} ({100 * shown / total:.0f}%); missing: {" ".join(missing)}')
    assert total > 60
    assert shown >= docs.COVERAGE_MIN * total, (f'source of only {shown} of {total} public definitions on the pages; '
                                                f'missing: {", ".join(missing)}')


def test_source_coverage_of_every_module(pages):
    "Each module, course or appendix, has the source of >= 95% of its public functions and classes on its page."
    low = []
    for mod in docs.exported_modules(NBS):
        shown, total, missing = docs.source_coverage(SITE, ROOT / 'hdit_edu', NBS, modules=[mod], parsed=pages)
        if total and shown < docs.COVERAGE_MIN * total: low.append(f'{mod} {shown}/{total} (missing {" ".join(missing)})')
    assert len(docs.exported_modules(NBS)) >= 15
    assert not low, f'modules whose page shows the source of under 95% of their public definitions: {"; ".join(low)}'


# ---------------------------------------------------------------------------------------- the renderer, on a small notebook
def _synthetic(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell as C, new_markdown_cell as M, new_notebook, new_output
    png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='
    widget = {'model_id': 'abc', 'version_major': 2, 'version_minor': 0}
    cells = [
        M('# Synthetic page\n\n> A page to test the renderer'),
        M('See [the other page](01_other.ipynb#part), '
          '[again](nbs/01_other.ipynb), [and again](../nbs/01_other.ipynb) and ![badge](images/colab-badge.svg).\n\n'
          r'Inline $\sigma_{\text{data}}^2$ and display $$x = \frac{a}{b}$$'),
        C('#| default_exp synthetic_mod'),
        C('#| export\nfrom fastcore.basics import patch'),
        C('#| exports\nclass Thing:\n    "A thing."\n    def __init__(self, a): self.a = a'),
        M('## Growing it {#grow .unnumbered}\n\n[source](https://example.com/x.py#L1){target="_blank" '
          'style="float:right; font-size:smaller"}\n\n::: {.callout-note}\nA *note*.\n:::'),
        C('#| exports\n@patch\ndef plus(self:Thing, b:int):\n    "Add `b`."\n    return self.a + b'),
        C('#| export\ndef hidden_helper(x):\n    "Plumbing."\n    return x'),
        C('#| echo: false\nprint("shown without its code")', outputs=[new_output('stream', text='shown without its code\n')]),
        C('print("no output")', outputs=[]),
        C('#| output: false\nprint("NOT SHOWN 1")', outputs=[new_output('stream', text='NOT SHOWN 1\n')]),
        C('#| include: false\nprint("NOT SHOWN 2")', outputs=[new_output('stream', text='NOT SHOWN 2\n')]),
        C('#| hide\nprint("NOT SHOWN 3")', outputs=[new_output('stream', text='NOT SHOWN 3\n')]),
        C('w = make_widget()\nw', outputs=[new_output('execute_result', execution_count=7, data={
            'application/vnd.jupyter.widget-view+json': widget, 'image/png': png, 'text/plain': 'VBox(children=(HBox(),))'})]),
        C('w2', outputs=[new_output('display_data', data={
            'application/vnd.jupyter.widget-view+json': widget, 'text/plain': 'IntSlider(value=3)'})]),
        C('1 + 1', outputs=[new_output('execute_result', execution_count=9, data={'text/plain': '2'})]),
    ]
    nb = new_notebook(cells=cells, metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    other = new_notebook(cells=[M('# Other page\n\n> The next one'), M('## Part\n\nText.')], metadata=nb.metadata)
    index = new_notebook(cells=[M('# Home\n\n> Start here'), M('Read [the synthetic page](00_synthetic.ipynb).')],
                         metadata=nb.metadata)
    src, proc = tmp_path / 'nbs', tmp_path / 'proc'
    src.mkdir(); proc.mkdir(); (src / 'images').mkdir()
    (src / 'images' / 'colab-badge.svg').write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    for name, n in [('00_synthetic', nb), ('01_other', other), ('index', index)]: nbformat.write(n, src / f'{name}.ipynb')
    return src, proc


def test_renderer_on_a_synthetic_notebook(tmp_path, monkeypatch):
    from execnb.nbio import read_nb, write_nb
    from nbdev.config import get_config
    from nbdev.processors import FilterDefaults
    src, proc = _synthetic(tmp_path)
    monkeypatch.chdir(ROOT)
    for p in src.glob('*.ipynb'):  # what `proc_nbs` does to each notebook
        nb = read_nb(p); FilterDefaults()(nb); write_nb(nb, proc / p.name)
    (proc / 'sidebar.yml').write_text('website:\n  sidebar:\n    contents:\n      - index.ipynb\n'
                                      '      - 00_synthetic.ipynb\n      - 01_other.ipynb\n')
    out = tmp_path / 'site'
    assert docs.render_site(get_config(), proc, out, src, verbose=False) == 0
    failed, n_links = docs.check_site(out, verbose=False)
    assert failed == 0 and n_links > 0
    page = (out / '00_synthetic.html').read_text()
    soup = BeautifulSoup(page, 'html.parser')
    code = '\n'.join(d.get_text() for d in soup.select('div.cell-input'))
    # `#| exports` cells: their source shows, in an open fold titled "Exported source", after their show_doc entry
    folds = soup.select('div.cell-input details.code-fold[open]')
    assert len(folds) == 2 and all(f.summary.get_text() == 'Exported source' for f in folds)
    assert 'class Thing:' in code and 'def plus(self:Thing, b:int):' in code and '#|' not in code
    assert 'hidden_helper(x):' not in code and soup.find(id='hidden_helper')  # exported but hidden: its docs only
    assert soup.find(id='thing.plus') and soup.find(id='thing')
    assert [h.get_text().rstrip('#') for h in soup.select('div.cell-output-markdown h3')] == ['Thing', 'Thing.plus', 'hidden_helper']
    # echo / output / include / hide
    assert 'shown without its code' in page and 'print("shown without its code")' not in code
    assert 'print("no output")' in code
    assert 'print("NOT SHOWN 1")' in code and 'NOT SHOWN 1' not in _text_outside(soup, 'div.cell-input')  # output: false
    assert 'NOT SHOWN 2' not in page and 'NOT SHOWN 3' not in page  # include: false, hide
    # Quarto attributes become HTML
    a = soup.find('a', string='source')
    assert a['target'] == '_blank' and 'float:right' in a['style'].replace(' ', '') and '{target=' not in page
    h = soup.find(id='grow')
    assert h.name == 'h2' and 'unnumbered' in h['class'] and '{#' not in soup.get_text()
    assert soup.select_one('div.callout.callout-note em').get_text() == 'note'
    # widgets: the static picture, or a note; never the repr
    ws = soup.select('div.cell-output-widget')
    assert ws[0].img['src'].startswith('data:image/png;base64,iVBOR') and docs.WIDGET_NOTE in ws[1].get_text()
    assert 'VBox(' not in page and 'IntSlider(' not in page
    assert not re.search(r'\b(In|Out)\s?\[[\d ]*\]:', soup.get_text())
    # links to notebooks (and the images folder) point to the site's pages
    hrefs = [x['href'] for x in soup.select('div.cell-md a')]
    assert hrefs.count('01_other.html') == 2 and '01_other.html#part' in hrefs
    assert soup.find('img', alt='badge')['src'] == 'images/colab-badge.svg' and (out / 'images' / 'colab-badge.svg').exists()
    assert (out / '01_other.html').read_text().count('id="part"') == 1
    # navigation, maths
    assert [x['href'] for x in soup.select('nav.sidebar ol.pages > li > a')] == ['index.html', '00_synthetic.html', '01_other.html']
    assert soup.select_one('a.prev')['href'] == 'index.html' and soup.select_one('a.next')['href'] == '01_other.html'
    assert r'$\sigma_{\text{data}}^2$' in soup.select_one('div.cell-md').get_text()
    assert soup.find('script', src='mathjax/tex-chtml-full.js') and (out / 'mathjax' / 'tex-chtml-full.js').exists()
    # source coverage finds the class and its @patch method in the page's code cells
    lib = tmp_path / 'lib'; lib.mkdir()
    (lib / 'synthetic_mod.py').write_text('__all__ = ["Thing", "hidden_helper"]\nfrom fastcore.basics import patch\n'
                                          'class Thing:\n    def __init__(self, a): self.a = a\n'
                                          '@patch\ndef plus(self:Thing, b:int): return self.a + b\n'
                                          'def hidden_helper(x): return x\n')
    assert docs.source_coverage(out, lib, src, ['synthetic_mod']) == (1, 2, ['synthetic_mod.hidden_helper'])
    (lib / 'synthetic_mod.py').write_text((lib / 'synthetic_mod.py').read_text() + '@patch\ndef _plumbing(self:Thing): pass\n')
    assert docs.source_coverage(out, lib, src, ['synthetic_mod'])[0] == 1  # a hidden private helper is allowed
    (lib / 'synthetic_mod.py').write_text((lib / 'synthetic_mod.py').read_text() + '@patch\ndef minus(self:Thing): pass\n')
    assert docs.source_coverage(out, lib, src, ['synthetic_mod'])[0] == 0  # a public patched method missing: the class is not
