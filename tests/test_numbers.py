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
