"""One set of numbers everywhere: the scores the README, the home page, the model card and the command-line page
quote are the ones the quality notebook's stored run printed (the run is slow, so CI reads its stored output), and
the tables of the ablation page and the recipe appendix come from results files written by committed scripts."""
import json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'


def _text(nb, kind):
    cells = json.loads((NBS / nb).read_text(encoding='utf-8'))['cells']
    if kind == 'outputs':
        return ''.join(''.join(o.get('text', '')) for c in cells if c['cell_type'] == 'code' for o in c['outputs'])
    return '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')


def stored_scores():
    out = _text('12_quality.ipynb', 'outputs')
    main = re.search(r'main job \(32 px\)\s+FD_OM\s+([\d.]+)\s+floor at 32 px\s+([\d.]+)\s+ratio\s+([\d.]+)', out)
    shipped = re.search(r'pretrained openmoji64 \(64 px\)\s+FD_OM\s+([\d.]+)\s+floor at 64 px\s+([\d.]+)', out)
    assert main and shipped, 'the quality notebook has no stored scores of the main job and the shipped model'
    return main.groups(), shipped.groups()


def test_every_page_quotes_the_stored_scores():
    (main, floor32, ratio), (shipped, floor64) = stored_scores()
    readme, index = (ROOT / 'README.md').read_text(encoding='utf-8'), _text('index.ipynb', 'markdown')
    card = (ROOT / 'hdit_edu' / 'pretrained' / 'MODEL_CARD.md').read_text(encoding='utf-8')
    for name, text in [('README.md', readme), ('index.ipynb', index)]:
        text = ' '.join(text.split())  # line wrapping does not matter
        assert f'score {shipped}' in text and f'score {floor64}' in text, name
        assert f'scores {main} against a 32 px floor of {floor32}' in text, name
    assert f'| {shipped} |' in card and f'| {floor64} |' in card
    assert f'FD<sub>OM</sub> {main}' in _text('13_cli.ipynb', 'markdown')
    assert f'main job at {float(ratio):.1f}×' in _text('09_first_model.ipynb', 'markdown')


def text_results():
    return json.loads((NBS / 'results' / 'text_to_emoji.json').read_text(encoding='utf-8'))


def test_text_results_are_complete_and_recorded_with_their_commands():
    res = text_results()
    for key in ('classes', 'pooled', 'cross', 'both', 'both-coarse'):
        row = res['equal_compute'][key]
        assert row['command'].startswith('python tools/text_results.py score ') and row['images_seen'] == 96_000
        assert 0 <= row['cfg3']['top1'] <= row['cfg3']['top5'] <= 1
    assert res['curve']['points'] and all(c.startswith('python tools/text_results.py curve')
                                          for c in res['curve']['commands'])
    assert res['training']['stages'] and all(st['command'].startswith('python tools/train_text_model.py')
                                              for st in res['training']['stages'])
    assert res['training']['steps'] == sum(st['steps'] for st in res['training']['stages'])
    assert res['models']['openmoji-text']['model'] == 'openmoji-text'


def test_readme_and_model_card_quote_the_text_results():
    res = text_results()
    m, fl = res['models']['openmoji-text'], res['floor']
    pc = lambda v: f'{100 * v:.1f}%'
    readme = ' '.join((ROOT / 'README.md').read_text(encoding='utf-8').split())
    for v in (m['cfg3']['top1'], m['cfg3']['top5'], m['cfg1']['top1'], m['cfg1']['top5'], fl['real_top1'], fl['real_top5']):
        assert pc(v) in readme, pc(v)
    card = (ROOT / 'hdit_edu' / 'pretrained' / 'MODEL_CARD_openmoji-text.md').read_text(encoding='utf-8')
    assert f"| guidance 3 | {pc(m['cfg3']['top1'])} | {pc(m['cfg3']['top5'])} | {m['cfg3']['fd']} |" in card
    assert all(st['command'] in card for st in res['training']['stages'])


def _tool(name):
    "A committed script under tools/ as a module (its `__main__` part does not run)."
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ROOT / 'tools' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def _code(nb): return '\n'.join(''.join(c['source']) for c in json.loads((NBS / nb).read_text(encoding='utf-8'))['cells']
                                 if c['cell_type'] == 'code')


def test_the_ablation_table_comes_from_its_script():
    from hdit_edu.ablation import ABLATION, equal_compute_steps
    res = json.loads((NBS / 'results' / 'ablation.json').read_text(encoding='utf-8'))
    assert res['command'].startswith('OMP_NUM_THREADS=1 python tools/ablation.py')
    assert list(res['rows']) == list(ABLATION), 'every row of the ablation, in order'
    steps = res['settings']['steps']
    for name, row in res['rows'].items():
        assert row['steps'] == equal_compute_steps(name, steps=steps, size=res['settings']['size']), name
        assert row['images'] == 32 * row['steps'] and (ROOT / row['image']).exists(), name
        fds = [row[f'fd_seed{s}'] for s in res['settings']['seeds']]
        assert all(f > row['floor'] > 0 for f in fds) and abs(row['fd_mean'] - sum(fds) / len(fds)) < 1e-9, name
    assert "Path('results/ablation.json')" in _code('12a_ablation.ipynb')


def test_the_recipe_table_comes_from_its_script():
    rows = _tool('main_job_recipe').ROWS
    res = json.loads((NBS / 'results' / 'main_job_recipe.json').read_text(encoding='utf-8'))
    assert res['command'].startswith('OMP_NUM_THREADS=1 python tools/main_job_recipe.py') and res['seeds'] == [0, 1, 2]
    assert list(res['rows']) == list(rows)
    for name, row in res['rows'].items():
        assert row['options'] == ' '.join(rows[name]) and row['step'] == 3000, name
        assert sorted(row['fd']) == ['0', '1', '2'] and all(v > row['floor'] for v in row['fd'].values()), name
    assert 'raw_fd' in next(iter(res['rows'].values())), 'the default is also scored with its raw weights'
    assert "Path('results/main_job_recipe.json')" in _code('appendix_recipe.ipynb')


def test_the_home_page_reads_the_page_times():
    res = json.loads((NBS / 'results' / 'page_times.json').read_text(encoding='utf-8'))
    assert res['command'].startswith('OMP_NUM_THREADS=1 python tools/page_times.py')
    stems = {p.stem for p in NBS.glob('*.ipynb')}
    assert set(res['pages']) == stems, set(res['pages']) ^ stems
    assert all(p['running_s'] > 0 and p['reading_min'] > 0 for p in res['pages'].values())
    assert "Path('results/page_times.json')" in _code('index.ipynb')
