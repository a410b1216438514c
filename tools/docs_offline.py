"""The docs site, built offline (Quarto itself cannot be installed here), and checked.

Runs nbdev's own notebook processing (what `nbdev_proc_nbs` does, minus its attempt to download Quarto) into `_proc/`,
then renders every processed notebook into `_site_offline/`: one page per notebook with a sidebar in reading order
(the order of nbdev's `sidebar.yml`), previous/next links, links between notebooks rewritten to the pages, the notebook
images copied beside the pages, maths typeset by a vendored MathJax 3 (no network), and the Quarto cell options that
nbdev's processing leaves in the notebooks honoured (`echo`, `output`, `include`, `output: asis`, `code-fold`,
`code-summary`). Widgets are shown by the static picture in their output bundle.

Then it checks the site: each page carries its title and every output the page must show, no local link is broken,
no directive, attribute syntax, widget repr or prompt leaks into the text, nothing is loaded from the network. It
prints the share of the teaching modules' public definitions whose source is on the pages (the tests assert it).
Usage: `python tools/docs_offline.py` from the repository root; exits non-zero on any failure.
"""
import ast, html, json, os, re, shutil, sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import yaml
from bs4 import BeautifulSoup
from nbconvert.filters import ansi2html, markdown2html_mistune
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

try: from ipython_pygments_lexers import IPython3Lexer as CodeLexer  # knows `%magic` and `!shell` lines
except ImportError: CodeLexer = PythonLexer

TOOLS = Path(__file__).resolve().parent
MATHJAX = TOOLS / 'vendor' / 'mathjax'  # MathJax 3.2.2 from npm (Apache-2.0): tex-chtml-full.js + its woff-v2 fonts
CSS = TOOLS / 'docs_site.css'
# The teaching modules whose public definitions must show their source on the site (issue: >= 95%).
TEACHING_MODULES = ['patching', 'rope', 'attention', 'neighborhood', 'blocks', 'model', 'diffusion', 'sampling']
COVERAGE_MIN = 0.95
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'
WIDGET_NOTE = '(interactive widget: run the notebook to use it)'
# Text that must never show on a page: outside the code cells (widget reprs, Quarto link attributes), and in the prose
# outside any code (Quarto attributes and fenced divs, directives).
LEAKS_ANYWHERE = ['{target=', 'source{', 'VBox(children', 'HBox(children', 'IntSlider(']
PROMPTS = re.compile(r'\b(In|Out)\s?\[[\d ]*\]:')  # execution-count prompts
LEAKS_IN_PROSE = ['{#', '{.', '#|', ':::']


# ----------------------------------------------------------------------------------------------- notebook helpers
def frontmatter(nb):
    "Title, description and output file from the YAML raw cell nbdev's processing puts first."
    for c in nb.cells:
        if c.cell_type == 'raw' and c.source.startswith('---'):
            meta = yaml.safe_load(c.source.strip().strip('-')) or {}
            return (str(meta.get('title', '')).strip(), str(meta.get('description', '')).strip(),
                    str(meta.get('output-file', '')).strip())
    return '', '', ''


_re_directive = re.compile(r'^\s*#\|\s*(.*?)\s*$')


def directives(source: str):
    "Quarto/nbdev cell options (`#| key: value` or `#| flag`) of a code cell, and its source without any `#|` line."
    opts, keep = {}, []
    for line in source.splitlines():
        m = _re_directive.match(line)
        if not m: keep.append(line); continue
        k, sep, v = m.group(1).partition(':')
        if ' ' in k.strip() and not sep: k, _, v = k.strip().partition(' ')  # nbdev style: `#| export module`
        opts[k.strip()] = v.strip().strip('"\'') if sep else (v.strip() or True)
    return opts, '\n'.join(keep).strip('\n')


def _false(v): return str(v).strip().lower() == 'false'


def _text(v): return v if isinstance(v, str) else ''.join(v)


def visible_outputs(cell):
    "The outputs of a code cell that its options let the page show (none for `include: false` / `output: false`)."
    opts, _ = directives(cell.source)
    if _false(opts.get('include', True)) or _false(opts.get('output', True)): return []
    outs = cell.get('outputs', [])
    if _false(opts.get('warning', True)): outs = [o for o in outs if o.get('name') != 'stderr']
    merged = []  # consecutive prints to the same stream show as one block, as in Jupyter
    for o in outs:
        if (o.get('output_type') == 'stream' and merged and merged[-1].get('output_type') == 'stream'
                and merged[-1].get('name') == o.get('name')):
            merged[-1] = {**merged[-1], 'text': _text(merged[-1]['text']) + _text(o['text'])}
        else: merged.append(o)
    return merged


def expected_outputs(nb):
    "Figure payloads (first 64 base64 characters) and text snippets of every output the page must show."
    figs, texts = [], []
    for c in nb.cells:
        if c.cell_type != 'code': continue
        asis = str(directives(c.source)[0].get('output', '')).lower() == 'asis'
        for o in visible_outputs(c):
            data = o.get('data', {})
            fig = next((m for m in ('image/png', 'image/jpeg', 'image/gif') if m in data), None)
            if fig: figs.append(_text(data[fig]).replace('\n', '')[:64])
            elif WIDGET_MIME in data: texts.append(None)  # shown as a note: no text of its own to find
            elif o.get('output_type') == 'stream': texts.append(None if asis else _text(o['text']))
            elif o.get('output_type') == 'error': texts.append(o.get('ename', ''))
            elif {'text/markdown', 'text/html', 'image/svg+xml', 'text/latex'} & set(data): texts.append(None)
            elif 'text/plain' in data: texts.append(_text(data['text/plain']))
    return figs, texts


def slow_cells_run_by_docs(nb_path: Path, flags) -> list:
    """Indices of cells flagged with a test flag (e.g. `#| slow`) that nbdev's docs processing would execute anyway.

    nbdev's `exec_show_docs` runs every cell containing an import (to make `show_doc` work), whatever its flags:
    a slow cell with an import would make every docs build run a long job. Keep such imports in their own cell."""
    bad = []
    for i, c in enumerate(nbformat.read(nb_path, as_version=4).cells):
        if c.cell_type != 'code' or not set(re.findall(r'^#\|\s*([\w-]+)', c.source, re.M)) & set(flags): continue
        try: tree = ast.parse('\n'.join(l for l in c.source.splitlines() if not l.lstrip().startswith(('%', '!'))))
        except SyntaxError: continue
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)): bad.append(i)
    return bad


def read_nb(path: Path):
    "A processed notebook, as nbdev wrote it (without validation: nbdev leaves its own keys, e.g. `has_sd`, in cells)."
    nb = nbformat.from_dict(json.loads(Path(path).read_text(encoding='utf-8')))
    for c in nb.cells: c.source = _text(c.get('source', ''))
    return nb


def title_cell_prose(nb_path: Path) -> list:
    "Lines of a notebook's title cell besides title, description and `- key: value`: nbdev drops the whole cell from the docs."
    for c in nbformat.read(nb_path, as_version=4).cells:
        if c.cell_type == 'raw' and c.source.startswith('---'): return []
        if c.cell_type == 'markdown' and re.search(r'^#\s+\S', c.source, re.M):
            return [l for l in c.source.splitlines() if l.strip() and not re.match(r'^(#\s|>\s|-\s+\S.*:)', l)]
    return []


# ----------------------------------------------------------------------------------------------- markdown
def _attrs(spec: str) -> dict:
    "Pandoc attributes `{#id .class key=\"value\"}` as a dict of HTML attributes."
    out, classes = {}, []
    for m in re.finditer(r'''([\w-]+)=(?:"([^"]*)"|'([^']*)'|(\S+))|#([\w:.-]+)|\.([\w-]+)''', spec):
        if m.group(1): out[m.group(1)] = next(g for g in m.group(2, 3, 4) if g is not None)
        elif m.group(5): out['id'] = m.group(5)
        else: classes.append(m.group(6))
    if classes: out['class'] = ' '.join(classes + [out.get('class', '')]).strip()
    return out


def _attr_html(attrs: dict) -> str:
    return ''.join(f' {k}="{html.escape(v)}"' for k, v in attrs.items())


_ATTRS = r'\{(\s*(?:[#.][\w:.-]|[\w-]+=)[^}\n]*)\}'  # `{#id ...}`, `{.class ...}`, `{key=...}`: not maths like `{0, 1}`
_re_link_attr = re.compile(r'(!?)\[([^\]\n]*)\]\(([^)\s]+)(?:\s+"([^"]*)")?\)' + _ATTRS)
_re_span_attr = re.compile(r'(?<![\]!\\])\[([^\]\n]+)\]' + _ATTRS)
_re_heading_attr = re.compile(r'^(#{1,6}\s+.*?)\s*' + _ATTRS + r'\s*$')
_re_fence = re.compile(r'^\s*(```|~~~)')
_re_div = re.compile(r'^:::+\s*(?:\{([^}]*)\}|([\w-]+))?\s*$')


def _link_attr(m):
    bang, text, url, title, spec = m.groups()
    a = _attrs(spec)
    if bang:
        style = ';'.join(f'{k}:{v}' + ('px' if v.isdigit() else '') for k in ('width', 'height') if (v := a.pop(k, None)))
        if style: a['style'] = (a.get('style', '') + ';' + style).strip(';')
        return f'<img src="{html.escape(url)}" alt="{html.escape(text)}"{_attr_html(a)}>'
    if a.get('target') == '_blank': a.setdefault('rel', 'noopener')
    if text.strip().lower() == 'source': a['class'] = (a.get('class', '') + ' source-link').strip()
    return f'<a href="{html.escape(url)}"{_attr_html(a)}>{html.escape(text)}</a>'


def quarto_markdown(md: str) -> str:
    """Pandoc/Quarto syntax that plain markdown renderers show as text, turned into HTML: `[text](url){attrs}`,
    `![alt](src){width=..}`, `[text]{.class}`, headings with `{#id .class}` and `:::` fenced divs (callouts)."""
    out, fence = [], None
    for line in md.split('\n'):
        if fence:
            if line.lstrip().startswith(fence): fence = None
            out.append(line); continue
        if (m := _re_fence.match(line)): fence = m.group(1); out.append(line); continue
        if (m := _re_div.match(line)):
            if m.group(1) is None and m.group(2) is None: out += ['', '</div>', '']
            else:
                a = _attrs(m.group(1) or '.' + m.group(2))
                cls = a.get('class', '')
                a['class'] = ('callout ' + cls if 'callout' in cls else cls).strip()
                title = a.pop('title', None)
                out += ['', f'<div{_attr_html(a)}>', ''] + ([f'<p class="callout-title">{html.escape(title)}</p>', '']
                                                          if title else [])
            continue
        if (m := _re_heading_attr.match(line)):
            a = _attrs(m.group(2))
            line = m.group(1) + f' <span class="heading-attrs"{_attr_html({"data-" + k: v for k, v in a.items()})}></span>'
        line = _re_link_attr.sub(_link_attr, line)
        line = _re_span_attr.sub(lambda m: f'<span{_attr_html(_attrs(m.group(2)))}>{m.group(1)}</span>', line)
        out.append(line)
    return '\n'.join(out)


def slug(text: str) -> str:
    "Pandoc's automatic heading identifier (so the anchors of nbdev's links, e.g. `model.html#hdit`, resolve)."
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower())
    s = re.sub(r'^[^a-z]+', '', re.sub(r'\s+', '-', s))
    return s or 'section'


# ----------------------------------------------------------------------------------------------- site
class Site:
    "The pages in reading order, and how links found in the notebooks map to them."
    def __init__(self, cfg, proc: Path, out_dir: Path):
        self.cfg, self.proc, self.out_dir = cfg, proc, out_dir
        order = []
        sb = proc / 'sidebar.yml'
        if sb.exists():
            def walk(x):
                if isinstance(x, str): order.append(x)
                elif isinstance(x, dict): [walk(v) for k, v in x.items() if k in ('contents', 'section', 'href')]
                elif isinstance(x, list): [walk(v) for v in x]
            walk((yaml.safe_load(sb.read_text()) or {}).get('website', {}).get('sidebar', {}).get('contents', []))
        stems = [Path(o).stem for o in order if o.endswith('.ipynb') and (proc / Path(o).name).exists()]
        rest = sorted(p.stem for p in proc.glob('*.ipynb') if p.stem not in stems)
        stems += rest
        if 'index' in stems: stems.remove('index'); stems.insert(0, 'index')
        self.stems, self.titles, self.descs, self.out_files = stems, {}, {}, {}
        for s in stems:
            nb = read_nb(proc / f'{s}.ipynb')
            self.titles[s], self.descs[s], of = frontmatter(nb)
            self.out_files[of or f'{s}.html'] = s
        self.out_files.setdefault('index.html', 'index')
        self.doc_urls = [u.rstrip('/') for u in {f"{cfg.doc_host}{cfg.doc_baseurl}", f"{cfg.doc_host}{cfg.doc_baseurl}"
                                                  .replace('https://', 'http://')} if u.startswith('http')]

    def local(self, url: str):
        "The site-relative target of a link or image found in a notebook, or None when it is not ours."
        if not url or url.startswith(('#', 'data:', 'mailto:')): return None
        for base in self.doc_urls:  # nbdev's links to the online docs, e.g. https://host/base/model.html#hdit
            if url == base or url.startswith(base + '/') or url.startswith(base + '#'):
                rest = url[len(base):].lstrip('/')
                page, _, frag = rest.partition('#')
                stem = self.out_files.get(page or 'index.html')
                if stem: return f'{stem}.html' + (f'#{frag}' if frag else '')
                return None
        if re.match(r'^[a-z][\w+.-]*:', url, re.I): return None
        path, _, frag = url.partition('#')
        path = re.sub(r'^(\./)+', '', path)
        path = re.sub(r'^(\.\./)*(nbs/)', '', path)
        if path.endswith('.ipynb') and Path(path).stem in self.stems:
            return f'{Path(path).stem}.html' + (f'#{frag}' if frag else '')
        if path.startswith('images/'): return path + (f'#{frag}' if frag else '')
        return None


class Page:
    "Renders one processed notebook."
    def __init__(self, site: Site, stem: str):
        self.site, self.stem = site, stem
        self.nb = read_nb(site.proc / f'{stem}.ipynb')
        self.title, self.desc = site.titles[stem], site.descs[stem]
        self.ids, self.toc, self.lang = set(), [], self.nb.metadata.get('kernelspec', {}).get('language', 'python')

    # -- pieces
    def fix_html(self, frag: str, headings=True) -> str:
        "Heading ids as Quarto makes them, Quarto attributes moved onto headings, links and images made local."
        soup = BeautifulSoup(frag, 'html.parser')
        for h in soup.find_all(re.compile(r'^h[1-6]$')) if headings else []:
            extra = h.find('span', class_='heading-attrs')
            attrs = {k[5:]: v for k, v in extra.attrs.items() if k.startswith('data-')} if extra else {}
            if extra: extra.decompose()
            for a in h.find_all('a', class_='anchor-link'): a.decompose()
            hid = attrs.pop('id', None) or slug(h.get_text())
            base, n = hid, 0
            while hid in self.ids: n += 1; hid = f'{base}-{n}'
            self.ids.add(hid)
            h['id'] = hid
            if attrs.get('class'): h['class'] = attrs['class'].split()
            if h.name == 'h2': self.toc.append((hid, h.get_text().strip()))
            anchor = soup.new_tag('a', href=f'#{hid}', attrs={'class': 'anchor-link', 'aria-hidden': 'true'})
            anchor.string = '#'
            h.append(anchor)
        for tag, attr in (('a', 'href'), ('img', 'src')):
            for t in soup.find_all(tag):
                url = t.get(attr)
                if url and (loc := self.site.local(url)) is not None: t[attr] = loc
        return str(soup)

    def markdown(self, md: str, attachments=None) -> str:
        for name, bundle in (attachments or {}).items():
            mime = next(iter(bundle))
            md = md.replace(f'attachment:{name}', f'data:{mime};base64,{_text(bundle[mime])}')
        return self.fix_html(markdown2html_mistune(quarto_markdown(md)))

    def code(self, src: str) -> str:
        return highlight(src, CodeLexer() if self.lang == 'python' else PythonLexer(),
                         HtmlFormatter(cssclass='highlight', nowrap=False))

    def output(self, o, asis=False) -> str:
        t = o.get('output_type')
        if t == 'stream' and asis and o.get('name') == 'stdout':  # printed markdown, shown as markdown (as Quarto does)
            return f'<div class="cell-output cell-output-markdown">{self.markdown(_text(o["text"]))}</div>'
        if t == 'stream':
            cls = 'cell-output-stderr' if o.get('name') == 'stderr' else 'cell-output-stdout'
            return f'<div class="cell-output {cls}"><pre>{ansi2html(_text(o["text"]))}</pre></div>'
        if t == 'error':
            return f'<div class="cell-output cell-output-error"><pre>{ansi2html(chr(10).join(o.get("traceback", [])))}</pre></div>'
        data, meta = o.get('data', {}), o.get('metadata', {})
        img = next((m for m in ('image/png', 'image/jpeg', 'image/gif') if m in data), None)
        if WIDGET_MIME in data:  # never the widget's repr: its static picture, or a note
            if img: return self._img(img, data, meta, 'cell-output-widget', alt='picture of an interactive widget')
            return f'<div class="cell-output cell-output-widget"><p class="widget-note">{WIDGET_NOTE}</p></div>'
        if 'text/html' in data:
            return f'<div class="cell-output cell-output-display">{self.fix_html(_text(data["text/html"]), headings=False)}</div>'
        if 'text/markdown' in data:
            return f'<div class="cell-output cell-output-markdown">{self.markdown(_text(data["text/markdown"]))}</div>'
        if 'image/svg+xml' in data:
            return f'<div class="cell-output cell-output-display">{_text(data["image/svg+xml"])}</div>'
        if img: return self._img(img, data, meta, 'cell-output-display')
        if 'text/latex' in data:
            return f'<div class="cell-output cell-output-display">{html.escape(_text(data["text/latex"]))}</div>'
        if 'text/plain' in data:
            if asis: return f'<div class="cell-output cell-output-markdown">{self.markdown(_text(data["text/plain"]))}</div>'
            return f'<div class="cell-output cell-output-display"><pre>{html.escape(_text(data["text/plain"]), quote=False)}</pre></div>'
        return ''

    def _img(self, mime, data, meta, cls, alt=None):
        m = meta.get(mime, {}) if isinstance(meta.get(mime), dict) else {}
        size = ''.join(f' {k}="{int(m[k])}"' for k in ('width', 'height') if isinstance(m.get(k), (int, float)))
        plain = _text(data.get('text/plain', '')).strip()
        alt = html.escape(alt or (plain.splitlines()[0][:200] if plain else 'figure'))
        return (f'<div class="cell-output {cls}"><img src="data:{mime};base64,{_text(data[mime]).replace(chr(10), "")}"'
                f'{size} alt="{alt}"></div>')

    def cell(self, c) -> str:
        if c.cell_type == 'markdown':
            if not re.sub(r'<!--.*?-->', '', c.source, flags=re.S).strip(): return ''
            return f'<div class="cell-md">{self.markdown(c.source, c.get("attachments"))}</div>'
        if c.cell_type == 'raw':
            fmt = c.metadata.get('raw_mimetype', c.metadata.get('format', ''))
            return c.source if fmt in ('text/html', 'html') else ''
        opts, src = directives(c.source)
        if _false(opts.get('include', True)) or not c.source.strip(): return ''
        parts = []
        if not _false(opts.get('echo', True)) and src.strip():
            code = self.code(src)
            fold = str(opts.get('code-fold', 'false')).lower()
            if fold in ('show', 'true'):
                summary = html.escape(str(opts.get('code-summary', 'Code')))
                code = (f'<details class="code-fold"{" open" if fold == "show" else ""}><summary>{summary}</summary>'
                        f'{code}</details>')
            parts.append(f'<div class="cell-input">{code}</div>')
        asis = str(opts.get('output', '')).lower() == 'asis'
        parts += [self.output(o, asis) for o in visible_outputs(c)]
        parts = [p for p in parts if p]
        return f'<div class="cell">{"".join(parts)}</div>' if parts else ''

    # -- the page
    def render(self) -> str:
        cells = [c for c in self.nb.cells if not (c.cell_type == 'raw' and c.source.startswith('---'))]
        body = '\n'.join(filter(None, (self.cell(c) for c in cells)))
        s, i = self.site, self.site.stems.index(self.stem)
        nav = []
        for st in s.stems:
            cur = st == self.stem
            li, aria = (' class="current"', ' aria-current="page"') if cur else ('', '')
            item = f'<li{li}><a href="{st}.html"{aria}>{html.escape(s.titles[st] or st)}</a>'
            if cur and self.toc:
                item += '<ul class="toc">' + ''.join(f'<li><a href="#{h}">{html.escape(t)}</a></li>' for h, t in self.toc) + '</ul>'
            nav.append(item + '</li>')
        prev_ = f'<a class="prev" href="{s.stems[i-1]}.html">← {html.escape(s.titles[s.stems[i-1]])}</a>' if i > 0 else '<span></span>'
        next_ = f'<a class="next" href="{s.stems[i+1]}.html">{html.escape(s.titles[s.stems[i+1]])} →</a>' if i + 1 < len(s.stems) else '<span></span>'
        desc = f'<p class="description">{html.escape(self.desc)}</p>' if self.desc else ''
        return PAGE.format(title=html.escape(self.title), nav='\n'.join(nav), body=body, prev=prev_, next=next_,
                           header=f'<h1 class="title">{html.escape(self.title)}</h1>{desc}',
                           site=html.escape(s.titles.get('index') or s.cfg.get('title', 'docs')))


MATHJAX_CONFIG = """window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true},
  options: {ignoreHtmlClass: 'tex2jax_ignore', processHtmlClass: 'tex2jax_process'}
};"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="site.css">
<link rel="stylesheet" href="styles.css">
<script>""" + MATHJAX_CONFIG.replace('{', '{{').replace('}', '}}') + """</script>
<script defer id="MathJax-script" src="mathjax/tex-chtml-full.js"></script>
</head>
<body>
<nav class="sidebar" aria-label="Notebooks">
<a class="site-title" href="index.html">{site}</a>
<ol class="pages">
{nav}
</ol>
</nav>
<main class="content">
<header class="page-header">{header}</header>
{body}
<nav class="pager" aria-label="Previous and next">{prev}{next}</nav>
</main>
</body>
</html>
"""


# ----------------------------------------------------------------------------------------------- checks
_SKIP_TEXT = ('script', 'style')
_CODE = ('pre', 'code')


def parse_page(page: Path) -> BeautifulSoup:
    "A generated page, parsed; embedded pictures shortened to 64 characters of their payload (parsing stays fast)."
    text = re.sub(r'(data:[\w/+.-]+;base64,[A-Za-z0-9+/=]{64})[A-Za-z0-9+/=\s]*', r'\1', page.read_text(encoding='utf-8'))
    return BeautifulSoup(text, 'html.parser')


def page_problems(page: Path, out_dir: Path) -> tuple:
    "Broken local links, leaked text and network loads of one generated page; and the number of local links."
    soup = parse_page(page)
    problems, n_links = [], 0
    for t in soup.find_all(['script', 'link', 'img', 'iframe', 'source', 'audio', 'video', 'embed']):
        src = t.get('src') or (t.get('href') if t.name == 'link' else None)
        if src and re.match(r'^(https?:)?//', src): problems.append(f'<{t.name}> loads from the network: {src[:80]}')
    for t in soup.find_all(['a', 'img', 'link', 'script']):
        url = t.get('href') if t.name in ('a', 'link') else t.get('src')
        if not url or url.startswith(('#', 'data:', 'mailto:', 'javascript:')) or re.match(r'^[a-z][\w+.-]*:', url, re.I):
            if url and url.startswith('#') and len(url) > 1 and not soup.find(id=unquote(url[1:])):
                problems.append(f'anchor {url} not on the page')
            continue
        n_links += 1
        path = urlsplit(url).path
        if not (page.parent / unquote(path)).resolve().is_file(): problems.append(f'broken local link: {url}')
    for t in soup.find_all(_SKIP_TEXT): t.decompose()
    for pre in soup.select('div.cell-input pre'):
        if any(l.lstrip().startswith('#|') for l in pre.get_text().splitlines()): problems.append('leaked `#|` line in code')
    for t in soup.select('div.cell-input'): t.decompose()  # code may well say `IntSlider(`; outputs and prose may not
    text = soup.get_text()
    problems += [f'leaked text {pat!r}' for pat in LEAKS_ANYWHERE if pat in text]
    if (m := PROMPTS.search(text)): problems.append(f'leaked prompt {m.group(0)!r}')
    for t in soup.find_all(_CODE): t.decompose()
    prose = soup.get_text()
    for pat in LEAKS_IN_PROSE:
        if pat in prose:
            i = prose.index(pat); problems.append(f'leaked text {pat!r}: ...{prose[max(0, i-30):i+30]!r}...')
    return problems, n_links


def page_code(page) -> str:
    "The source code shown in the code cells of a page (its path, or the page parsed)."
    soup = parse_page(page) if isinstance(page, Path) else page
    return '\n'.join(d.get_text() for d in soup.select('div.cell-input pre'))


def public_definitions(lib: Path, module: str) -> list:
    """`(name, patterns)` for each function and class of `module.__all__`: the lines of which one must be in a code
    cell of the page for the name to count as shown. A class also needs every public method it gets from `@patch` there
    (`def name(self:Class`); private `_helpers` may stay hidden as plumbing."""
    tree = ast.parse((lib / f'{module}.py').read_text(encoding='utf-8'))
    names, defs, patched = [], {}, {}
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(getattr(t, 'id', None) == '__all__' for t in n.targets):
            names = list(ast.literal_eval(n.value))
        if isinstance(n, ast.ClassDef): defs[n.name] = [rf'^\s*class\s+{n.name}\b']
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decos = [ast.unparse(d) for d in n.decorator_list]
            cls = None
            if any(d == 'patch' or d.startswith(('patch(', 'patch_to(')) for d in decos):
                to = next((d for d in decos if d.startswith('patch_to(')), None)
                if to: cls = to[len('patch_to('):].split(',')[0].split(')')[0].strip()
                elif n.args.args and n.args.args[0].annotation is not None:
                    cls = ast.unparse(n.args.args[0].annotation).strip('()')
            if cls and n.name.startswith('_') and not n.name.endswith('__'): pass  # private helpers may be plumbing
            elif cls:
                for c in re.split(r'\s*[,|]\s*', cls):
                    patched.setdefault(c, []).append(rf'^\s*def\s+{n.name}\s*\(\s*{n.args.args[0].arg}\b'
                                                     + (rf'\s*:\s*\(?[^)]*\b{c}\b' if not decos[0].startswith('patch_to') else ''))
            else: defs[n.name] = [rf'^\s*(async\s+)?def\s+{n.name}\s*\(']
        elif isinstance(n, ast.Assign) and isinstance(n.value, (ast.Call, ast.Attribute, ast.Lambda)):
            for t in n.targets:  # functions made by assignment, e.g. `f = SomeFunction.apply`
                if isinstance(t, ast.Name) and not t.id.isupper(): defs.setdefault(t.id, [rf'^\s*{t.id}\s*='])
    return [(nm, defs[nm] + patched.get(nm, [])) for nm in names if nm in defs]


def exported_modules(nbs: Path) -> list[str]:
    "Every module a notebook in `nbs` exports (its `default_exp`), course and appendix alike."
    mods = []
    for nb in sorted(nbs.glob('*.ipynb')):
        src = '\n'.join(_text(c['source']) for c in json.loads(nb.read_text(encoding='utf-8'))['cells'])
        if (m := re.search(r'^\s*#\|\s*default_exp\s+(\S+)', src, re.M)) and m.group(1) not in mods: mods.append(m.group(1))
    return mods


def source_coverage(out_dir: Path, lib: Path, nbs: Path, modules=TEACHING_MODULES, parsed=None):
    """Public definitions of the teaching modules whose source is on their notebook's page: (shown, total, missing).
    `parsed`: optional {page stem: parsed page}, to not parse the pages again."""
    page_of = {}
    for nb in sorted(nbs.glob('*.ipynb')):
        cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
        src = '\n'.join(_text(c['source']) for c in cells if c['cell_type'] == 'code')
        if (m := re.search(r'^\s*#\|\s*default_exp\s+(\S+)', src, re.M)): page_of.setdefault(m.group(1), nb.stem)
    shown, missing = 0, []
    for mod in modules:
        stem = page_of.get(mod)
        page = out_dir / f'{stem}.html'
        code = page_code((parsed or {}).get(stem) or page) if stem and page.exists() else ''
        for name, pats in public_definitions(lib, mod):
            if all(re.search(p, code, re.M) for p in pats): shown += 1
            else: missing.append(f'{mod}.{name}')
    return shown, shown + len(missing), missing


# ----------------------------------------------------------------------------------------------- build
def write_assets(out_dir: Path, nbs: Path):
    shutil.copytree(MATHJAX, out_dir / 'mathjax')
    css = CSS.read_text(encoding='utf-8') + '\n/* code highlighting (pygments) */\n' + HtmlFormatter().get_style_defs('.highlight')
    (out_dir / 'site.css').write_text(css, encoding='utf-8')
    styles = nbs / 'styles.css'
    (out_dir / 'styles.css').write_text(styles.read_text(encoding='utf-8') if styles.exists() else '', encoding='utf-8')
    if (nbs / 'images').is_dir(): shutil.copytree(nbs / 'images', out_dir / 'images')


def render_site(cfg, proc: Path, out_dir: Path, nbs: Path, verbose=True) -> int:
    "Render the processed notebooks in `proc` into `out_dir` and check each page; returns the number of failed pages."
    shutil.rmtree(out_dir, ignore_errors=True); out_dir.mkdir(parents=True)
    write_assets(out_dir, nbs)
    site, failed = Site(cfg, proc, out_dir), 0
    for stem in site.stems:
        pg = Page(site, stem)
        body = pg.render()
        path = out_dir / f'{stem}.html'
        path.write_text(body, encoding='utf-8')
        problems = [] if pg.title else ['no title in frontmatter']
        if pg.title and f'<title>{html.escape(pg.title)}</title>' not in body: problems.append('title missing from page')
        figs, texts = expected_outputs(pg.nb)
        problems += ['a stored figure is missing from the page' for f in figs if f not in body]
        for t in texts:
            line = next((l.strip() for l in (t or '').splitlines() if l.strip()), '')
            variants = {line[:40], html.escape(line[:40]), html.escape(line[:40], quote=False),
                        html.escape(line[:40]).replace('&#x27;', '&#39;')}
            if line and not any(v in body for v in variants):
                problems.append(f'stored output missing from page: {line[:40]!r}')
        if verbose:
            print(f'{"FAIL" if problems else "ok  "} {path.name}: "{pg.title}", {len(figs)} figures, {len(texts)} other outputs'
                  + ''.join(f'\n     - {q}' for q in problems))
        failed += bool(problems)
    return failed


def check_site(out_dir: Path, verbose=True):
    "Links, leaks and network loads of every page: (number of failing pages, number of local links checked)."
    failed, links = 0, 0
    for page in sorted(out_dir.glob('*.html')):
        problems, n = page_problems(page, out_dir)
        links += n
        if problems:
            failed += 1
            if verbose: print(f'FAIL {page.name}:' + ''.join(f'\n     - {q}' for q in dict.fromkeys(problems)))
    return failed, links


def build(quiet=False) -> int:
    from nbdev.config import get_config
    from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
    from nbdev.serve import proc_nbs
    from nbdev.processors import FilterDefaults
    import nbdev.serve_drv
    cfg = get_config()
    flags = cfg.get('tst_flags', '').split()
    slow = {s.name: b for s in sorted(cfg.nbs_path.glob('*.ipynb')) if (b := slow_cells_run_by_docs(s, flags))}
    for name, b in slow.items():
        print(f'FAIL {name}: cells {b} carry a test flag ({" ".join(flags)}) but import something, so the docs build '
              f'would execute them; move their imports into a separate cell')
    prose = {s.name: p for s in sorted(cfg.nbs_path.glob('*.ipynb')) if (p := title_cell_prose(s))}
    for name, p in prose.items():
        print(f'FAIL {name}: its title cell also holds {p[0][:60]!r}...; nbdev drops the whole title cell from the docs, '
              f'so move that text into a cell of its own')
    if slow or prose: return 1
    refresh_quarto_yml()
    nbdev_sidebar.__wrapped__(path=cfg.nbs_path)
    srcs = sorted(cfg.nbs_path.glob('*.ipynb'))
    try: cache = proc_nbs(cfg.nbs_path, force=True, n_workers=0)
    except Exception:  # one notebook failed: process the others one by one, so every failure shows at once
        cache = cfg.config_path / '_proc'
        for src in srcs:
            if (cache / src.name).exists(): continue
            try: nbdev.serve_drv.main((src, cache / src.name, FilterDefaults))
            except Exception as e:
                print(f'FAIL {src.name}: nbdev could not process it for the docs: {e}\n     nbdev runs every cell that '
                      f'imports something (and every exported cell) to render show_doc: keep imports in cells of their own')
            finally: os.environ.pop('IN_TEST', None)
    out_dir = cfg.config_path / '_site_offline'
    missing = [s.name for s in srcs if not (cache / s.name).exists()]
    failed = render_site(cfg, cache, out_dir, cfg.nbs_path, verbose=not quiet) + len(missing)
    if not (cache / '_quarto.yml').exists(): print('FAIL _quarto.yml did not reach the processed site'); failed += 1
    bad_pages, links = check_site(out_dir)
    shown, total, miss = source_coverage(out_dir, cfg.lib_path, cfg.nbs_path)
    pct = 100 * shown / max(total, 1)
    print(f'offline docs: {len(srcs) - failed} of {len(srcs)} pages ok; {links} local links, '
          f'{bad_pages} pages with broken links/leaks; source on the pages: {shown} of {total} public definitions '
          f'({pct:.0f}%, the tests want >= {COVERAGE_MIN:.0%})' + (f'; missing: {" ".join(miss)}' if miss else ''))
    (out_dir / '.built').write_text('ok' if not (failed or bad_pages) else 'failed')
    return 1 if failed or bad_pages else 0


if __name__ == '__main__': sys.exit(build())
