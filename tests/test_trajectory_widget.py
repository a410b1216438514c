"The trajectory viewer, driven the way a user drives it (set widget values, check what is displayed)."
import warnings
import numpy as np
import pytest
import torch
pytest.importorskip('ipywidgets')
from hdit_edu.diffusion import Denoiser
from hdit_edu.sampling import GaussianMixtureDenoiser, sample, get_sigmas_karras, _display_image
from hdit_edu.trajectory_widget import TrajectoryViewer, toy_emoji_denoiser, open_denoiser


@pytest.fixture(scope='module')
def toy(): return toy_emoji_denoiser(size=16, std=0.1)


def _reference(v):
    p = v.params
    return sample(v.denoiser, 1, v.size, v.channels, p['sampler'], p['steps'], class_cond=p['class_cond'],
                  cfg_scale=p['cfg_scale'], seed=p['seed'])[0]


def test_frames_are_the_sampling_trajectory(toy):
    v = TrajectoryViewer(toy, steps=12, seed=3, class_cond=1)
    assert len(v.frames) == 13 and v.size == (16, 16) and v.channels == 3
    assert torch.equal(v.frames[-1][0], _reference(v))                      # last frame == sample() for that seed
    torch.testing.assert_close(torch.tensor([f[2] for f in v.frames]), get_sigmas_karras(12, 1e-2, 80.))
    x0, d0, s0 = v.frames[0]
    assert abs(x0.std() - 80) < 8                                             # step 0 is pure noise at sigma_max
    torch.testing.assert_close(d0, toy(x0[None], torch.tensor([80.]), class_cond=torch.tensor([1]))[0])


def test_widget_controls_drive_the_display(toy):
    v = TrajectoryViewer(toy, steps=10, seed=0)
    assert v.params['class_cond'] == toy.num_classes                          # default: 'no class'
    _ = v.widget
    assert v.slider.max == 10 and v.play.max == 10
    v.play.value = 4                                                          # play button is linked to the slider
    assert v.slider.value == 4 and v.current['step'] == 4
    np.testing.assert_array_equal(v.current['x_image'], _display_image(v.frames[4][0], v.frames[4][2]))
    np.testing.assert_array_equal(v.current['denoised_image'], _display_image(v.frames[4][1]))
    png4, label4 = v.images['x'].value, v.label.value
    v.slider.value = 9
    assert v.images['x'].value != png4 and v.label.value != label4 and 'step 9' in v.label.value
    # the schedule plot marks the current step
    fig = v.schedule_figure()
    mx, my = fig.axes[0].lines[1].get_data()
    assert list(mx) == [9] and abs(my[0] - v.frames[9][2]) < 1e-6
    # every control re-samples and the result is sample()'s for the new settings
    for name, value in [('steps', 6), ('seed', 7), ('sampler', 'heun'), ('class_cond', 2), ('cfg_scale', 2.5)]:
        before = v.frames[-1][0]
        v.controls[name].value = value
        assert v.params[name] == value
        assert torch.equal(v.frames[-1][0], _reference(v)), name
        if name != 'cfg_scale': assert not torch.equal(before, v.frames[-1][0]), name
    assert len(v.frames) == 7 and v.slider.max == 6 and v.current['step'] == 6  # step clamped to the new range
    assert 'octopus' in v.label.value and 'guidance 2.5' in v.label.value


def test_class_dropdown_lists_names_and_no_class(toy):
    v = TrajectoryViewer(toy, steps=3)
    _ = v.widget
    assert [o[0] for o in v.controls['class_cond'].options] == ['fox', 'frog', 'octopus', 'mushroom', 'no class']


def test_unconditional_model_has_no_class_controls():
    den = GaussianMixtureDenoiser(torch.zeros(1, 1, 8, 8), 0.3)
    v = TrajectoryViewer(den, steps=4)
    _ = v.widget
    assert 'class_cond' not in v.controls and 'cfg_scale' not in v.controls and v.params['class_cond'] is None
    assert v.channels == 1 and v.current['x_image'].shape == (8, 8)


def test_errors(toy):
    with pytest.raises(ValueError, match='not both'): TrajectoryViewer(toy, checkpoint='x')
    with pytest.raises(ValueError, match='size'): TrajectoryViewer(lambda x, s: x)
    v = TrajectoryViewer(toy, steps=3)
    with pytest.raises(ValueError, match='Unknown sampler'): v.set(sampler='ddpm')
    with pytest.raises(ValueError, match='Unknown parameter'): v.set(eta=0.)
    with pytest.raises(IndexError): v.show_step(4)


def _small_hdit(num_classes=3):
    model_mod = pytest.importorskip('hdit_edu.model')
    torch.manual_seed(0)
    cfg = model_mod.HDiTConfig(levels=[dict(depth=1, width=32, attention='neighborhood', d_head=16, kernel_size=3),
                                       dict(depth=1, width=64, attention='global', d_head=16)],
                               patch_size=2, input_size=16, num_classes=num_classes, mapping_width=32, mapping_depth=1)
    m = model_mod.HDiT(cfg)
    with torch.no_grad():
        for p in m.parameters(): p.add_(torch.randn_like(p) * 0.02)
    return m.eval()


def test_default_uses_pretrained_and_falls_back_with_a_message(monkeypatch):
    files = pytest.importorskip('hdit_edu.model_files')
    def missing(*a, **k): raise FileNotFoundError("pretrained model 'openmoji64' is not included")
    monkeypatch.setattr(files, 'load_pretrained', missing)
    with pytest.warns(UserWarning, match='no pretrained model.*toy'):
        v = TrajectoryViewer(steps=3)
    assert isinstance(v.denoiser, GaussianMixtureDenoiser) and 'toy' in v.source
    m = _small_hdit()
    monkeypatch.setattr(files, 'load_pretrained', lambda *a, **k: m)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        v = TrajectoryViewer(steps=3)
    assert isinstance(v.denoiser, Denoiser) and v.denoiser.model is m and v.size == (16, 16)
    assert torch.equal(v.frames[-1][0], _reference(v))


def test_hdit_and_checkpoint(tmp_path):
    files = pytest.importorskip('hdit_edu.model_files')
    m = _small_hdit()
    v = TrajectoryViewer(Denoiser(m), steps=4, class_cond=1, cfg_scale=2.)
    assert torch.equal(v.frames[-1][0], _reference(v))
    _ = v.widget; v.slider.value = 2
    assert v.current['step'] == 2
    files.save_model(m, tmp_path / 'tiny')
    path = next(p for p in tmp_path.iterdir() if p.suffix == '.safetensors')
    v2 = TrajectoryViewer(checkpoint=path, steps=4, class_cond=1, cfg_scale=2.)
    torch.testing.assert_close(v2.frames[-1][0], v.frames[-1][0])


def test_set_from_code_updates_the_controls_and_samples_once(toy, monkeypatch):
    "Calling `set` in code moves the widget's controls to the new values, without a second sampling run."
    v = TrajectoryViewer(toy, steps=5, seed=0)
    _ = v.widget
    runs = []
    real_run = v.run
    monkeypatch.setattr(v, 'run', lambda: (runs.append(1), real_run())[1])
    v.set(steps=120, seed=4, sampler='euler', class_cond=3, cfg_scale=1.5)
    assert len(runs) == 1
    got = {k: w.value for k, w in v.controls.items()}
    assert got == dict(steps=120, seed=4, sampler='euler', class_cond=3, cfg_scale=1.5)
    assert v.controls['steps'].max >= 120 and v.slider.max == 120
    assert torch.equal(v.frames[-1][0], _reference(v))


def test_display_bundle_carries_a_static_picture(toy):
    "Rendered pages (no kernel, no widget state) show the PNG in the bundle, never the widget's `VBox(...)` repr."
    import base64, io
    from PIL import Image
    v = TrajectoryViewer(toy, steps=6, seed=0, class_cond=0).show_step(3)
    bundle = v._repr_mimebundle_()
    assert 'application/vnd.jupyter.widget-view+json' in bundle                   # live widget in Jupyter
    im = Image.open(io.BytesIO(base64.b64decode(bundle['image/png'])))
    assert im.format == 'PNG' and im.width >= 600 and im.height >= 200
    assert bundle['text/plain'].startswith('TrajectoryViewer: step 3 / 6') and 'VBox' not in bundle['text/plain']
    assert 'fox' in bundle['text/plain']
    fig = v.frame_figure()                                                        # x_t, denoised, schedule
    assert len(fig.axes) == 3 and list(fig.axes[2].lines[1].get_data()[0]) == [3]
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), v.current['denoised_image'])


def test_default_denoiser_puts_the_model_on_the_device(monkeypatch):
    files = pytest.importorskip('hdit_edu.model_files')
    from hdit_edu.trajectory_widget import default_denoiser
    seen = {}
    m = _small_hdit()
    def fake(name, map_location='cpu'): seen.update(name=name, device=map_location); return m.to(map_location)
    monkeypatch.setattr(files, 'load_pretrained', fake)
    den, source = default_denoiser('cpu')
    assert seen == dict(name='openmoji64', device=torch.device('cpu')) and source == 'pretrained openmoji64'
    assert isinstance(den, Denoiser) and den.model is m and m.class_names == ['faces', 'nature', 'food']


def test_the_viewer_lives_whole_in_trajectory_widget():
    "No @patch leftovers bound to None; sampling (below the viewer) never imports it, nor matplotlib or ipywidgets."
    import hdit_edu.sampling as s, hdit_edu.trajectory_widget as tw
    assert TrajectoryViewer.__module__ == 'hdit_edu.trajectory_widget' and not hasattr(s, 'TrajectoryViewer')
    for m in ['run', 'plot_strip', 'set', 'show_step', 'current', 'widget', 'frame_figure', '_repr_mimebundle_']:
        assert hasattr(TrajectoryViewer, m), m
    for mod in (s, tw): assert not [k for k, v in vars(mod).items() if v is None], mod.__name__


def test_sampling_does_not_import_the_viewer():
    "sampling sits below trajectory_widget: no import of it (not even inside a function), no module __getattr__."
    import ast, inspect, hdit_edu.sampling as s
    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(s))):
        if isinstance(node, ast.ImportFrom): names |= {node.module or ''} | {a.name for a in node.names}
        elif isinstance(node, ast.Import): names |= {a.name for a in node.names}
    assert not [n for n in names if 'trajectory_widget' in n or 'ipywidgets' in n or 'matplotlib' in n], names
    assert not hasattr(s, '__getattr__')


def test_open_denoiser(toy):
    assert open_denoiser(toy) == (toy, 'GaussianMixtureDenoiser')
    with pytest.raises(ValueError, match='not both'): open_denoiser(toy, checkpoint='x')
