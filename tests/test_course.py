"""The course reads as a course: the numbered notebooks stay short pages, every notebook's API headings stand over
their own source, and no page talks about the machine it was built on. (The rendered site is checked in
test_docs_site.py; these checks read the notebooks themselves, so they run without building anything.)"""
import ast, json, re
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / 'nbs'
COURSE = sorted([*NBS.glob('[0-9][0-9]_*.ipynb'), *NBS.glob('[0-9][0-9][a-z]_*.ipynb')])   # 09a: after 09
APPENDIX = sorted(NBS.glob('appendix_*.ipynb'))
ALL = sorted(NBS.glob('*.ipynb'))
HIDDEN = re.compile(r"^#\|\s*(hide\b|echo:\s*false|include:\s*false|exporti?\b(?!s))", re.M)
MAX_LINES, MAX_CELL, MAX_WIDTH = 300, 30, 110


def _cells(nb): return json.loads(nb.read_text(encoding='utf-8'))['cells']
def _src(c): return ''.join(c['source'])


def visible_code(nb):
    "The lines of code a reader of `nb`'s page sees, cell by cell (directive lines and hidden cells left out)."
    return [[ln for ln in _src(c).splitlines() if not ln.startswith('#|')]
            for c in _cells(nb) if c['cell_type'] == 'code' and not HIDDEN.search(_src(c))]


def test_the_course_and_the_appendix_exist():
    names = [p.stem for p in COURSE]
    for want in ['00_patching', '03_neighborhood', '05_model', '08_sampling', '09_first_model', '10_editing',
                 '11_training', '13_cli']:
        assert want in names, f'course page {want} is missing'
    assert names.index('09_first_model') == names.index('08_sampling') + 1, '"your first model" follows sampling'
    assert len(APPENDIX) >= 3, 'the engineering lives in appendix notebooks'


@pytest.mark.parametrize('nb', COURSE, ids=lambda p: p.stem)
def test_course_pages_are_short(nb):
    cells = visible_code(nb)
    total, longest = sum(map(len, cells)), max(map(len, cells), default=0)
    wide = [ln for c in cells for ln in c if len(ln) > MAX_WIDTH]
    assert total <= MAX_LINES, f'{nb.name}: {total} visible code lines (a course page has at most {MAX_LINES})'
    assert longest <= MAX_CELL, f'{nb.name}: a visible cell of {longest} lines (at most {MAX_CELL})'
    assert not wide, f'{nb.name}: {len(wide)} visible lines over {MAX_WIDTH} characters, e.g. {wide[0]!r}'


@pytest.mark.parametrize('nb', APPENDIX, ids=lambda p: p.stem)
def test_appendix_lines_fit_the_page(nb):
    wide = [ln for c in visible_code(nb) for ln in c if len(ln) > MAX_WIDTH]
    assert not wide, f'{nb.name}: {len(wide)} visible lines over {MAX_WIDTH} characters, e.g. {wide[0]!r}'


def public_definitions(src):
    "Names of the public functions, classes and `@patch` methods defined at the top level of a cell's code."
    code = '\n'.join(ln for ln in src.splitlines() if not ln.startswith(('#|', '%', '!')))
    try: tree = ast.parse(code)
    except SyntaxError: return []
    return [n.name for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith('_')]


@pytest.mark.parametrize('nb', ALL, ids=lambda p: p.stem)
def test_each_api_heading_stands_over_its_own_source(nb):
    "nbdev puts the headings of a shown cell's definitions after it: one public definition per shown exported cell."
    crowded = [(i, defs) for i, c in enumerate(_cells(nb)) if c['cell_type'] == 'code'
               and re.search(r'^#\|\s*exports\b', _src(c), re.M) and len(defs := public_definitions(_src(c))) > 1]
    assert not crowded, f'{nb.name}: cells defining several public names (split them): {crowded}'


MACHINE_TALK = ['CI skips', 'CI runs', 'in CI', 'another program', 'other programs', 'keeps one core busy',
                'keeping one core busy', '/tmp/', 'tmp/hdit', 'this machine', 'with two threads', 'the build machine']


@pytest.mark.parametrize('nb', ALL, ids=lambda p: p.stem)
def test_no_page_talks_about_the_machine_it_was_built_on(nb):
    text = []
    for c in _cells(nb):
        if c['cell_type'] == 'markdown': text.append(_src(c))
        for o in c.get('outputs', []):
            text.append(''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', '')))
    text = '\n'.join(text)
    found = [p for p in MACHINE_TALK if p.lower() in text.lower()]
    assert not found, f'{nb.name} talks about the machine it was built on: {found}'


def test_no_main_module_in_any_signature():
    "Annotations that name a class of the notebook itself render as `__main__.X` on the page."
    bad = [f'{nb.name}[{i}]' for nb in ALL for i, c in enumerate(_cells(nb))
           for o in c.get('outputs', []) if '__main__.' in json.dumps(o.get('data', {}))]
    assert not bad, f'`__main__.` in the outputs of {bad}'


@pytest.mark.parametrize('nb', ALL, ids=lambda p: p.stem)
def test_subtitle_has_no_code_spans(nb):
    "The frontmatter description is the page's subtitle, shown as plain text: backticks would show as they are."
    head = _src(_cells(nb)[0])
    subtitle = [ln for ln in head.splitlines() if ln.startswith('>')]
    assert subtitle, f'{nb.name} has no description line (> ...) in its first cell'
    assert not any('`' in ln for ln in subtitle), f'{nb.name}: backticks in the subtitle {subtitle[0][:80]!r}'
