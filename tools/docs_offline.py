"""Offline check of the docs pipeline (Quarto itself cannot be installed here).

Runs nbdev's own notebook processing (what `nbdev_proc_nbs` does, minus its attempt to download Quarto),
renders every processed notebook to HTML with nbconvert into `_site_offline/`, and checks that each page
carries its title and every stored output (text and figures) of the processed notebook.
Usage: `python tools/docs_offline.py` from the repository root; exits non-zero on any failure.
"""
import ast, base64, hashlib, html, json, re, shutil, sys
from pathlib import Path

import nbformat
import yaml
from nbconvert import HTMLExporter
from nbdev.config import get_config
from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
from nbdev.serve import proc_nbs


def frontmatter(nb):
    "Title and description from the YAML raw cell nbdev's processing puts first."
    for c in nb.cells:
        if c.cell_type == 'raw' and c.source.startswith('---'):
            meta = yaml.safe_load(c.source.strip().strip('-')) or {}
            return str(meta.get('title', '')).strip(), str(meta.get('description', '')).strip()
    return '', ''


def stored_outputs(nb):
    "Figure payloads (PNG/JPEG/GIF) and text snippets of every output the page must show."
    pngs, texts = [], []
    for c in nb.cells:
        if c.cell_type != 'code': continue
        for o in c.get('outputs', []):
            data = o.get('data', {})
            fig = next((m for m in ('image/png', 'image/jpeg', 'image/gif') if m in data), None)
            if fig: pngs.append(data[fig].replace('\n', '')[:64])
            elif o.get('output_type') == 'stream': texts.append(o['text'])
            elif 'text/markdown' in data or 'text/html' in data: texts.append(None)  # rendered markup: checked by count
            elif 'text/plain' in data: texts.append(data['text/plain'] if isinstance(data['text/plain'], str) else ''.join(data['text/plain']))
    return pngs, texts


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


def render(src: Path, out_dir: Path):
    nb = nbformat.read(src, as_version=4)
    title, desc = frontmatter(nb)
    problems = []
    if not title: problems.append('no title in frontmatter')
    # Quarto turns the frontmatter into the page header; do the same for the offline page.
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'raw' and c.source.startswith('---'))]
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {title}\n\n*{desc}*"))
    body, _ = HTMLExporter(template_name='lab').from_notebook_node(nb, resources={'metadata': {'name': title}})
    page = out_dir / (src.stem + '.html')
    page.write_text(body, encoding='utf-8')
    if f'<title>{html.escape(title)}</title>' not in body: problems.append('title missing from page')
    pngs, texts = stored_outputs(nb)
    for p in pngs:
        if p not in body: problems.append('a stored figure is missing from the page')
    for t in texts:
        if t is None: continue
        line = next((l.strip() for l in t.splitlines() if l.strip()), '')
        if line and html.escape(line[:40]) not in body and line[:40] not in body:
            problems.append(f'stored output missing from page: {line[:40]!r}')
    return page, title, len(pngs), len(texts), problems


def main():
    cfg = get_config()
    flags = cfg.get('tst_flags', '').split()
    slow = {s.name: b for s in sorted(cfg.nbs_path.glob('*.ipynb')) if (b := slow_cells_run_by_docs(s, flags))}
    for name, b in slow.items():
        print(f'FAIL {name}: cells {b} carry a test flag ({" ".join(flags)}) but import something, so the docs build '
              f'would execute them; move their imports into a separate cell')
    if slow: sys.exit(1)
    refresh_quarto_yml()
    nbdev_sidebar.__wrapped__(path=cfg.nbs_path)
    cache = proc_nbs(cfg.nbs_path, force=True, n_workers=0)
    out_dir = cfg.config_path / '_site_offline'
    shutil.rmtree(out_dir, ignore_errors=True); out_dir.mkdir()
    srcs = sorted(cfg.nbs_path.glob('*.ipynb'))
    failed = 0
    for s in srcs:
        p = cache / s.name
        if not p.exists():
            print(f'FAIL {s.name}: not processed'); failed += 1; continue
        page, title, n_png, n_txt, problems = render(p, out_dir)
        status = 'FAIL' if problems else 'ok  '
        print(f'{status} {page.relative_to(cfg.config_path)}: "{title}", {n_png} figures, {n_txt} other outputs'
              + ''.join(f'\n     - {q}' for q in problems))
        failed += bool(problems)
    if not (cache / '_quarto.yml').exists(): print('FAIL _quarto.yml did not reach the processed site'); failed += 1
    print(f'offline docs: {len(srcs) - failed} of {len(srcs)} pages ok')
    sys.exit(1 if failed else 0)


if __name__ == '__main__': main()
