"""Nothing silent (issue 28), training through the Python API: a diverged run stops with one line and keeps its last
good checkpoint; every wrong setting, an unusable out_dir, data of another image size than the model's and a batch
too big for the memory are refused at construction with one line; Ctrl-C leaves a picture; the time left names the
limit that ends the run first."""
import json, math, os, signal, subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from mp_train import TinyNet, make_trainer, tiny_dataset  # noqa: E402

from hdit_edu.checkpoint import list_checkpoints  # noqa: E402
from hdit_edu.model import HDiT, HDiTConfig, small_hdit_config  # noqa: E402
from hdit_edu.training import Trainer, TrainConfig, TrainingDivergedError  # noqa: E402
from hdit_edu.memory import estimate_train_memory  # noqa: E402
from hdit_edu import memory  # noqa: E402


def _one_line(e): assert '\n' not in str(e.value), str(e.value)


def _all_finite(ck: Path) -> bool:
    tensors = [v for f in ('model', 'ema') for v in load_file(str(ck / f'{f}.safetensors')).values()]
    return all(torch.isfinite(v).all() for v in tensors if v.is_floating_point())


# 1. divergence

def test_a_diverging_run_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    t = make_trainer(tmp_path, steps=30, lr=1e3, checkpoint_every=2)
    with pytest.raises(TrainingDivergedError, match=r'^training diverged at step 4: the loss is inf; most likely the '
                       r'learning rate lr=1000 is too high for this model and batch: train again with e\.g\. lr=100, '
                       r'grad_clip=1\.0, into a fresh out_dir \(the last good checkpoint, step 2 in .*step_0000002, '
                       r'is kept; resuming it with the same settings repeats the same steps\)$') as e:
        t.fit()
    _one_line(e)
    assert isinstance(e.value, RuntimeError)                                 # the CLI maps it to a non-zero exit
    assert [p.name for p in list_checkpoints(tmp_path)] == ['step_0000002']
    assert _all_finite(list_checkpoints(tmp_path)[0])
    assert len(t.losses) == 3 and all(math.isfinite(l) for l in t.losses)   # checked at every step, none recorded
    assert not (tmp_path / 'loss.png').exists()                              # nothing written after the divergence


def test_a_diverged_run_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(TrainingDivergedError, match=r'step 4: the loss is inf; .*\(no checkpoint was written;'):
        make_trainer(tmp_path, steps=30, lr=1e3).fit()
    assert list_checkpoints(tmp_path) == []
    with pytest.raises(TrainingDivergedError, match='no checkpoint was written'):
        Trainer(TinyNet(), tiny_dataset(), out_dir=None, steps=30, lr=1e3, batch_size=8, progress=False,
                sample_n=0, sigma_sampler='log-normal').fit()


def _poison_at(step, then=None):
    "A callback that makes the weights non-finite after `step` (the loss of that step was still finite)."
    def cb(t):
        if t.step == step:
            with torch.no_grad(): t.model.out.weight[0, 0, 0, 0] = float('nan')
            if then: then()
    return cb


@pytest.mark.parametrize('where', ['periodic', 'final', 'ctrl-c'])
def test_no_checkpoint_is_ever_written_with_non_finite_weights(tmp_path, where):
    make_trainer(tmp_path, steps=2).fit()                                    # the good checkpoint: step 2
    kw = dict(periodic=dict(steps=8, checkpoint_every=2, keep_checkpoints=1, poison=4), final=dict(steps=5, poison=5),
              **{'ctrl-c': dict(steps=8, poison=3, then=lambda: os.kill(os.getpid(), signal.SIGINT))})[where]
    poison, then = kw.pop('poison'), kw.pop('then', None)
    t = make_trainer(tmp_path, callbacks=[_poison_at(poison, then)], **kw)
    with pytest.raises(TrainingDivergedError, match=rf'^training diverged at step {poison}: the weights hold NaN or '
                       r'infinite values \(model\.out\.weight, \.\.\.\); .*\(the last good checkpoint, step 2 in '):
        t.fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ['step_0000002']  # not pruned, not replaced
    assert _all_finite(list_checkpoints(tmp_path)[0])


def test_a_hard_interrupt_never_saves_non_finite_weights(tmp_path, capsys):
    def abort(): raise KeyboardInterrupt                                     # one that bypasses the stop flag
    with pytest.raises(KeyboardInterrupt):
        make_trainer(tmp_path, steps=8, callbacks=[_poison_at(3, abort)]).fit()
    assert 'Interrupted: no checkpoint of step 3: its weights hold NaN or infinite values.' in capsys.readouterr().out
    assert list_checkpoints(tmp_path) == []


# 2. every setting is checked at construction

BAD_SETTINGS = [
    (dict(steps=2.5), 'steps must be a whole number >= 1, got 2.5'),
    (dict(steps=0), 'steps must be a whole number >= 1, got 0'),
    (dict(steps='10'), "steps must be a whole number >= 1, got '10'"),
    (dict(steps=True), 'steps must be a whole number >= 1, got True'),
    (dict(lr=float('nan')), 'lr must be a finite number > 0, got nan'),
    (dict(lr=float('inf')), 'lr must be a finite number > 0, got inf'),
    (dict(lr=0), 'lr must be a finite number > 0, got 0'),
    (dict(lr=-1e-3), 'lr must be a finite number > 0, got -0.001'),
    (dict(batch_size=0), 'batch_size must be a whole number >= 1, got 0'),
    (dict(batch_size=8.5), 'batch_size must be a whole number >= 1, got 8.5'),
    (dict(checkpoint_every=0), 'checkpoint_every must be a whole number >= 1 or None, got 0'),
    (dict(sample_every=1.5), 'sample_every must be a whole number >= 1 or None, got 1.5'),
    (dict(log_every=0), 'log_every must be a whole number >= 1, got 0'),
    (dict(minutes=float('nan')), 'minutes must be a finite number >= 0 (0 or None: no limit), got nan'),
    (dict(minutes=float('inf')), 'minutes must be a finite number >= 0 (0 or None: no limit), got inf'),
    (dict(minutes=-1), 'minutes must be a finite number >= 0 (0 or None: no limit), got -1'),
    (dict(ema_power=-1), 'ema_power must be a finite number >= 0, got -1'),
    (dict(ema_power=float('nan')), 'ema_power must be a finite number >= 0, got nan'),
    (dict(ema_max_decay=1.5), 'ema_max_decay must be a finite number in [0, 1], got 1.5'),
    (dict(cond_dropout=1.0), 'cond_dropout must be a finite number in [0, 1), got 1.0'),
    (dict(cond_dropout=-0.1), 'cond_dropout must be a finite number in [0, 1), got -0.1'),
    (dict(lr_final=float('nan')), 'lr_final must be a finite number in [0, 1], got nan'),
    (dict(warmup_steps=-1), 'warmup_steps must be a whole number >= 0, got -1'),
    (dict(sample_n=-1), 'sample_n must be a whole number >= 0, got -1'),
    (dict(sample_steps=0), 'sample_steps must be a whole number >= 1, got 0'),
    (dict(keep_checkpoints=0), 'keep_checkpoints must be a whole number >= 1, got 0'),
    (dict(num_workers=-1), 'num_workers must be a whole number >= 0, got -1'),
    (dict(grad_accum=0), 'grad_accum must be a whole number >= 1, got 0'),
    (dict(eps=0), 'eps must be a finite number > 0, got 0'),
    (dict(weight_decay=-0.1), 'weight_decay must be a finite number >= 0, got -0.1'),
    (dict(grad_clip=-1), 'grad_clip must be a finite number >= 0 (None or 0: no clipping), got -1'),
    (dict(grad_clip=float('nan')), 'grad_clip must be a finite number >= 0 (None or 0: no clipping), got nan'),
    (dict(sigma_data=0), 'sigma_data must be a finite number > 0, got 0'),
    (dict(betas=(0.9,)), 'betas must be two finite numbers in [0, 1), e.g. (0.9, 0.95), got (0.9,)'),
    (dict(betas=(0.9, 1.0)), 'betas must be two finite numbers in [0, 1), e.g. (0.9, 0.95), got (0.9, 1.0)'),
    (dict(cfg_scale=float('nan')), 'cfg_scale must be a finite number from 0 to 100'),
    (dict(seed=1.5), 'seed must be a whole number, got 1.5'),
    (dict(hflip='no'), "hflip must be True or False, got 'no'"),
    (dict(sampler='ddim'), "sampler must be one of ('euler', "),
    (dict(sigma_sampler='uniform'),
     "sigma_sampler must be one of ('log-normal', 'cosine-interpolated'), got 'uniform'"),
    (dict(weighting='snr2'), "weighting must be one of ('karras', 'snr', 'soft-min-snr'), got 'snr2'"),
    (dict(mixed_precision='fp8'), "mixed_precision must be 'auto', 'no', 'bf16' or 'fp16', got 'fp8'"),
    (dict(lr_schedule='linear'), "lr_schedule must be one of ('constant', 'cosine'), got 'linear'"),
    (dict(sigma_kwargs=None), 'sigma_kwargs must be a dict'),
    (dict(out_dir=5), r'out_dir must be a folder path (str or Path) or None (write nothing), got 5'),
]


@pytest.mark.parametrize('kw,msg', BAD_SETTINGS, ids=lambda v: str(v)[:40] if isinstance(v, dict) else '')
def test_a_wrong_setting_is_refused_in_one_line(kw, msg):
    with pytest.raises(ValueError) as e: TrainConfig(**kw)
    assert str(e.value).startswith(msg), str(e.value)
    _one_line(e)


def test_settings_are_checked_in_the_trainer_and_in_fit_too(tmp_path):
    with pytest.raises(ValueError, match='^steps must be a whole number >= 1, got 2.5$'):
        make_trainer(tmp_path, steps=2.5)                                    # before: StopIteration in fit()
    with pytest.raises(ValueError, match='^lr must be a finite number > 0, got nan$'):
        make_trainer(tmp_path, lr=float('nan'))                              # before: accepted, failed later
    t = make_trainer(tmp_path, steps=2)
    with pytest.raises(ValueError, match='^steps must be a whole number >= 1, got 2.5$'): t.fit(steps=2.5)
    with pytest.raises(ValueError, match=r'^minutes must be a finite number >= 0 \(0 or None: no limit\), got nan$'):
        t.fit(minutes=float('nan'))
    assert t.step == 0 and list_checkpoints(tmp_path) == []


def test_whole_numbers_of_any_type_are_ints_and_the_config_stays_json():
    c = TrainConfig(steps=2.0, batch_size=np.int64(8), checkpoint_every=np.int32(4), lr=np.float32(1e-3), seed=3.0,
                    minutes=0, grad_clip=0, hflip=np.bool_(False), betas=[0.9, 0.99])
    assert (c.steps, c.batch_size, c.checkpoint_every, c.seed) == (2, 8, 4, 3)
    assert all(type(v) is int for v in (c.steps, c.batch_size, c.checkpoint_every, c.seed))
    assert type(c.lr) is float and c.lr == pytest.approx(1e-3) and c.minutes is None and c.grad_clip == 0
    assert c.hflip is False and c.betas == (0.9, 0.99)
    from dataclasses import asdict
    json.dumps(asdict(c))                                                    # numpy scalars would not serialise
    t = Trainer(TinyNet(), tiny_dataset(), out_dir=None, steps=np.int64(2), batch_size=8, progress=False, sample_n=0)
    t.fit()
    assert t.step == 2


# 3. out_dir

def test_an_out_dir_that_is_a_file_is_refused_at_construction(tmp_path):
    f = tmp_path / 'notes.txt'; f.write_text('hi')
    with pytest.raises(NotADirectoryError, match=rf"^out_dir {f} is a file, not a folder: pass a folder for the run's "
                       r'checkpoints and pictures \(it is created if missing\)$'):
        make_trainer(f)
    with pytest.raises(NotADirectoryError, match=rf'^out_dir {f}/run is inside {f}, which is a file, not a folder'):
        make_trainer(f / 'run')


@pytest.mark.parametrize('where', ['/proc/hdit_edu_run', '/proc'])
def test_an_out_dir_that_cannot_be_written_is_refused_at_construction(where):
    with pytest.raises(ValueError, match=rf'^out_dir {where} cannot be created or written \(.+\): pass a folder you '
                       r'can write to, or out_dir=None to write nothing$'):
        make_trainer(where)


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0, reason='root writes into read-only folders')
def test_an_out_dir_under_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=r'cannot be created or written \(Permission denied\)'):
            make_trainer(ro / 'run')
    finally: ro.chmod(0o755)


def test_a_new_out_dir_is_created_and_left_clean(tmp_path):
    t = make_trainer(tmp_path / 'a' / 'b', steps=1)
    assert (tmp_path / 'a' / 'b').is_dir() and not list((tmp_path / 'a' / 'b').iterdir())
    t.fit(); assert list_checkpoints(tmp_path / 'a' / 'b')


# 4. the data's image size is the model's

def _images(n, c, size): return TensorDataset(torch.rand(n, c, size, size) * 2 - 1, torch.zeros(n, dtype=torch.long))


def test_data_of_another_size_than_the_model_is_refused(tmp_path):
    model = HDiT(HDiTConfig.tiny(16, num_classes=1))
    with pytest.raises(ValueError, match=r"^the data's images are 32x32 but the model is built for 16x16 "
                       r"\(config\.input_size\): build the data at the model's size, ImageDataset\(ds, 16\), or a "
                       r'model for 32x32 images, e.g\. HDiT\(small_hdit_config\(32\)\)$') as e:
        Trainer(model, _images(4, 3, 32), out_dir=str(tmp_path), progress=False)
    _one_line(e)
    with pytest.raises(ValueError, match=r"^the data's images have 1 channels but the model expects 3 "
                       r'\(config\.input_channels\): convert the images, or build the model with input_channels=1$'):
        Trainer(model, _images(4, 1, 16), out_dir=str(tmp_path), progress=False)
    Trainer(model, _images(4, 3, 16), out_dir=str(tmp_path), progress=False, batch_size=4)   # the right size


def test_an_image_dataset_at_another_size_is_refused():
    from hdit_edu.data import ImageDataset, openmoji_dataset
    ds = ImageDataset(openmoji_dataset(16, limit=4), 16, hflip=False)
    with pytest.raises(ValueError, match=r'images are 16x16 but the model is built for 32x32 .*ImageDataset\(ds, 32\)'):
        Trainer(HDiT(small_hdit_config(32, num_classes=ds.num_classes)), ds, out_dir=None)


# 5. Ctrl-C leaves a picture

def test_ctrl_c_writes_samples_and_loss_curve_of_the_saved_step(tmp_path, capsys):
    def ctrl_c(t):
        if t.step == 3: os.kill(os.getpid(), signal.SIGINT)
    t = make_trainer(tmp_path, steps=9, sample_n=4, sample_steps=2, callbacks=[ctrl_c])
    with pytest.raises(KeyboardInterrupt): t.fit()
    out = capsys.readouterr().out
    assert 'Interrupted: saved checkpoint' in out
    assert 'at step 3; writing the samples, real images and loss curve (Ctrl-C again to skip).' in out
    assert f'Step 3: samples, real images and loss curve in {tmp_path}. Run again to resume.' in out
    for f in ('samples.png', 'loss.png', 'real.png', 'samples/step_0000003.png'): assert (tmp_path / f).exists(), f
    assert [p.name for p in list_checkpoints(tmp_path)] == ['step_0000003']
    resumed = make_trainer(tmp_path, steps=9, sample_n=4, sample_steps=2); resumed.fit()   # still resumes
    assert resumed.step == 9


# 6. the time left names the limit that ends the run first

def test_the_time_left_says_when_the_minutes_limit_ends_the_run_first(tmp_path, capsys):
    make_trainer(tmp_path / 'a', steps=100_000, minutes=2e-3, progress=True, log_every=1).fit()
    first = [l for l in capsys.readouterr().out.splitlines() if l.startswith('step')][0]
    assert 'left: the time limit ends the run first, near step' in first, first
    make_trainer(tmp_path / 'b', steps=4, minutes=60, progress=True, log_every=2).fit()
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith('step')]
    assert lines and all(l.endswith(' left') for l in lines), lines     # the steps end first: the measured rate


# 7. memory

def test_the_memory_estimate_grows_with_batch_and_size_and_lets_normal_runs_through():
    m32, m64 = HDiT(small_hdit_config(32, num_classes=3)), HDiT(small_hdit_config(64, num_classes=3))
    assert estimate_train_memory(m32, 64, (3, 32, 32)) < estimate_train_memory(m32, 128, (3, 32, 32))
    assert estimate_train_memory(m32, 64, (3, 32, 32)) < estimate_train_memory(m64, 64, (3, 64, 64))
    for m, s in ((m32, 32), (m64, 64)):
        for b in (32, 256): assert estimate_train_memory(m, b, (3, s, s)) < 4 * 2**30, (s, b)   # a 4 GB machine
    assert estimate_train_memory(m32, 100_000, (3, 32, 32)) > 100 * 2**30    # the tester's run: far beyond


@pytest.mark.skipif(not Path('/proc/self/clear_refs').exists(), reason='measures the peak RSS through /proc (Linux)')
def test_the_memory_estimate_is_close_to_a_measured_run():
    "Peak RSS of a real training step at two batch sizes (the estimate's calibration): the slopes agree."
    code = textwrap.dedent('''
        import torch
        from hdit_edu.model import HDiT, small_hdit_config
        from hdit_edu.diffusion import Denoiser
        from hdit_edu.training import make_optimizer
        def peak_rss():   # VmHWM, in kB; writing 5 to clear_refs resets it
            return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) * 1024
        torch.manual_seed(0); torch.set_num_threads(1)
        m = HDiT(small_hdit_config(32, num_classes=3)); opt = make_optimizer(m); den = Denoiser(m)
        peaks = []
        for b in (8, 8, 40):
            x, y = torch.randn(b, 3, 32, 32), torch.zeros(b, dtype=torch.long)
            open('/proc/self/clear_refs', 'w').write('5')
            den.loss(x, torch.randn_like(x), torch.rand(b) + 0.1, class_cond=y).mean().backward()
            opt.step(); opt.zero_grad(set_to_none=True)
            peaks.append(peak_rss())
        print((peaks[2] - peaks[1]) / 32)''')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})
    measured = float(r.stdout.split()[-1])
    m = HDiT(small_hdit_config(32, num_classes=3))
    estimated = estimate_train_memory(m, 1, (3, 32, 32)) - estimate_train_memory(m, 0, (3, 32, 32))
    assert 0.8 * measured < estimated < 1.5 * measured, (estimated, measured, r.stderr[-500:])


def _hdit_trainer(size, batch_size, **kw):
    return Trainer(HDiT(small_hdit_config(size, num_classes=1)), _images(2, 3, size), out_dir=None, progress=False,
                   batch_size=batch_size, **kw)


def test_a_batch_too_big_for_the_memory_is_refused_naming_the_largest_that_fits(monkeypatch):
    monkeypatch.setattr(memory, 'available_memory', lambda device: 4 * 2**30)   # a 4 GiB machine
    with pytest.raises(ValueError, match=r'^batch_size=100000 of 32x32 images needs about \d+\.\d GiB of memory to '
                       r'train this model \(a rough estimate\) but 4\.0 GiB is free on this machine: use '
                       r'batch_size=(\d+) or less, or grad_accum=(\d+) to take the same step in micro-batches of '
                       r'(\d+)$') as e:
        _hdit_trainer(32, 100_000)
    _one_line(e)
    import re
    best, accum, micro = map(int, re.search(r'batch_size=(\d+) or less, or grad_accum=(\d+) .* of (\d+)$',
                                            str(e.value)).groups())
    assert 500 < best < 2000 and micro <= best and 100_000 % accum == 0 and micro == 100_000 // accum
    _hdit_trainer(32, best); _hdit_trainer(32, 100_000, grad_accum=accum)  # what the message says fits
    with pytest.raises(ValueError, match='batch_size='): _hdit_trainer(32, best + 1)
    for size, b in ((32, 32), (32, 256), (64, 32), (64, 256)): _hdit_trainer(size, b)   # normal runs pass


def test_a_model_too_big_for_the_memory_is_refused(monkeypatch):
    monkeypatch.setattr(memory, 'available_memory', lambda device: 2**20)
    with pytest.raises(ValueError, match=r'is free on this machine: even one image at a time does not fit: train a '
                       r'smaller model$'):
        _hdit_trainer(32, 8)


def test_the_real_memory_of_this_machine_refuses_an_absurd_batch():
    assert memory.available_memory(torch.device('cpu')) > 0
    with pytest.raises(ValueError, match=r'^batch_size=10000000 of 32x32 images needs about .* GiB is free on this '
                       r'machine: use batch_size=\d+ or less'):
        _hdit_trainer(32, 10_000_000)
