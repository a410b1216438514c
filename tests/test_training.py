"""The trainer: exact resume (also after Ctrl-C), checkpoint round trip and failure modes, EMA and optimizer groups,
gradient accumulation, and a small real training run on OpenMoji whose loss clearly falls."""
import copy, json, os, signal, sys, time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from mp_train import TinyConfig, TinyNet, make_trainer  # noqa: E402

from hdit_edu.training import Trainer, TrainConfig, ema_decay, make_optimizer
from hdit_edu.checkpoint import CheckpointError, ConfigMismatchError, list_checkpoints, read_checkpoint
from hdit_edu.randomness import StreamSampler
import hdit_edu.training as training
import hdit_edu.checkpoint as checkpoint


def _state(t):
    "Everything that defines where a run is: weights, EMA, optimizer moments."
    opt = t.optimizer.state_dict()
    return ({k: v.clone() for k, v in t.model.state_dict().items()},
            {k: v.clone() for k, v in t.ema.state_dict().items()},
            {(i, k): v.clone() for i, st in opt['state'].items() for k, v in st.items()})


def _assert_same_state(a, b):
    for da, db in zip(_state(a), _state(b), strict=True):
        assert da.keys() == db.keys()
        for k in da: assert torch.equal(da[k], db[k]), k


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    straight = make_trainer(tmp_path / 'a', steps=12)
    straight.fit()
    first = make_trainer(tmp_path / 'b', steps=5)
    first.fit()
    resumed = make_trainer(tmp_path / 'b', steps=12)       # a fresh process would do exactly this
    resumed.fit()
    assert resumed.losses == straight.losses                  # bit for bit, every step
    _assert_same_state(resumed, straight)
    assert len(straight.losses) == 12 and len(set(straight.losses)) == 12


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_resumes_exactly(tmp_path, capsys, sig):
    straight = make_trainer(tmp_path / 'a', steps=9)
    straight.fit()
    before = signal.getsignal(sig)
    def send_signal(t):
        if t.step == 4: os.kill(os.getpid(), sig)           # a real signal, as from the keyboard or a scheduler
    t = make_trainer(tmp_path / 'b', steps=9, callbacks=[send_signal])
    with pytest.raises(KeyboardInterrupt): t.fit()
    assert 'Interrupted: saved checkpoint' in capsys.readouterr().out
    assert [p.name for p in list_checkpoints(tmp_path / 'b')] == ['step_0000004']
    assert signal.getsignal(sig) is before                  # the handler is restored
    resumed = make_trainer(tmp_path / 'b', steps=9)
    resumed.fit()
    assert resumed.losses == straight.losses
    _assert_same_state(resumed, straight)


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    a = make_trainer(tmp_path / 'a', steps=4, grad_accum=1); a.fit()
    b = make_trainer(tmp_path / 'b', steps=4, grad_accum=4); b.fit()
    torch.testing.assert_close(torch.tensor(b.losses), torch.tensor(a.losses), rtol=1e-5, atol=0)
    for k, v in a.model.state_dict().items(): torch.testing.assert_close(b.model.state_dict()[k], v, rtol=0, atol=1e-5)


def test_checkpoint_round_trip(tmp_path):
    t = make_trainer(tmp_path, steps=3); t.fit()
    meta = read_checkpoint(tmp_path)
    assert meta['step'] == 3 and meta['samples_seen'] == 3 * 8 and meta['losses'] == t.losses
    assert meta['model_config'] == {'width': 16, 'num_classes': 3, 'channels': 3}
    ck = Path(meta['path'])
    assert sorted(p.name for p in ck.iterdir()) == ['ema.json', 'ema.safetensors', 'model.json', 'model.safetensors',
                                                     'optimizer.safetensors', 'trainer.json']
    u = make_trainer(tmp_path, steps=3)
    u._load_checkpoint(tmp_path)
    assert u.step == 3 and u.losses == t.losses
    _assert_same_state(u, t)
    assert not torch.equal(u.ema.out.weight, u.model.out.weight)   # EMA and model are saved separately


def test_corrupt_or_missing_checkpoint_gives_a_clear_error(tmp_path):
    t = make_trainer(tmp_path, steps=2); t.fit()
    ck = Path(read_checkpoint(tmp_path)['path'])
    f = ck / 'model.safetensors'
    good = f.read_bytes()
    f.write_bytes(good[:-100])                                      # truncated
    with pytest.raises(CheckpointError, match='corrupt'): make_trainer(tmp_path, steps=4).fit()
    f.write_bytes(good); (ck / 'ema.safetensors').unlink()
    with pytest.raises(CheckpointError, match='missing'): read_checkpoint(tmp_path)
    (ck / 'trainer.json').write_text('{"format": "hdit_edu-training-checkpoint/1", "step": ')
    with pytest.raises(CheckpointError, match='unreadable'): read_checkpoint(ck)
    with pytest.raises(FileNotFoundError, match='does not exist'): read_checkpoint(tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no checkpoint'): read_checkpoint(tmp_path / 'empty')


def test_config_mismatch_is_refused(tmp_path):
    make_trainer(tmp_path, steps=2).fit()
    with pytest.raises(ConfigMismatchError, match='batch_size'): make_trainer(tmp_path, steps=4, batch_size=16).fit()
    with pytest.raises(ConfigMismatchError, match=r'model config width: checkpoint 16, now 8\n') as e:
        make_trainer(tmp_path, config=TinyConfig(width=8), steps=4).fit()
    assert "{'width'" not in str(e.value)                       # names the key, does not dump whole configs
    assert e.value.diffs == [('model config width', 16, 8)]
    with pytest.raises(ConfigMismatchError, match='lr'): make_trainer(tmp_path, steps=4, lr=1e-3).fit()
    with pytest.raises(CheckpointError, match='resume=False'): make_trainer(tmp_path, steps=4, resume=False).fit()
    t = make_trainer(tmp_path, steps=4, grad_accum=2, log_every=3)   # settings outside the trajectory may change
    t.fit(); assert t.step == 4


def test_a_failed_save_never_replaces_a_good_checkpoint(tmp_path, monkeypatch):
    t = make_trainer(tmp_path, steps=2); t.fit()
    before = read_checkpoint(tmp_path)
    calls = []
    def failing_save_file(tensors, path, *a, **kw):
        calls.append(path); raise OSError('disk full (simulated)')
    monkeypatch.setattr(checkpoint, 'save_file', failing_save_file)
    t2 = make_trainer(tmp_path, steps=3)
    with pytest.raises(OSError, match='disk full'): t2.fit()
    assert calls
    assert [p.name for p in list_checkpoints(tmp_path)] == ['step_0000002']          # still there, still valid
    assert read_checkpoint(tmp_path)['files'] == before['files']
    assert not [p for p in (tmp_path / 'checkpoints').iterdir() if p.name.startswith('.tmp')]  # nothing half-written


def test_old_checkpoints_are_pruned_after_a_new_one_exists(tmp_path):
    t = make_trainer(tmp_path, steps=6, checkpoint_every=2, keep_checkpoints=2); t.fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ['step_0000004', 'step_0000006']


def test_minutes_zero_means_no_limit(tmp_path):
    assert TrainConfig(minutes=0).minutes is None
    with pytest.raises(ValueError, match=r'minutes must be a finite number >= 0 \(0 or None: no limit\)'):
        TrainConfig(minutes=-1)
    t = make_trainer(tmp_path, steps=3, minutes=0); t.fit()
    assert t.step == 3


def test_checkpoints_folder_names_the_newest_checkpoint(tmp_path):
    from hdit_edu.checkpoint import find_checkpoint
    make_trainer(tmp_path, steps=4, checkpoint_every=2).fit()
    assert find_checkpoint(tmp_path / 'checkpoints') == tmp_path / 'checkpoints' / 'step_0000004'
    assert read_checkpoint(tmp_path / 'checkpoints')['step'] == 4


def test_minutes_budget_stops_and_saves(tmp_path):
    t = make_trainer(tmp_path, steps=10_000, minutes=1e-4)
    t.fit()
    assert 1 <= t.step < 10_000 and list_checkpoints(tmp_path)[-1].name == f'step_{t.step:07d}'


def test_ema_follows_the_inverse_decay_schedule(tmp_path):
    "Recompute the EMA by hand from the weights after every step: the trainer's EMA must equal it."
    snaps = []
    t = make_trainer(tmp_path, steps=5, callbacks=[lambda t: snaps.append(copy.deepcopy(t.model.state_dict()))])
    ema = copy.deepcopy(t.model.state_dict())
    t.fit()
    for step, w in enumerate(snaps, 1):
        d = ema_decay(step, 0.75, 0.9999)
        ema = {k: ema[k] * d + w[k] * (1 - d) for k in ema}
    for k, v in t.ema.state_dict().items(): torch.testing.assert_close(v, ema[k], rtol=1e-5, atol=1e-7)


def test_conditioning_dropout_uses_the_null_class(tmp_path):
    seen = []
    t = make_trainer(tmp_path, steps=30, cond_dropout=0.25)
    model = t.model
    orig = model.forward
    def spy(x, sigma, class_cond=None, **kw):
        seen.append(class_cond.clone()); return orig(x, sigma, class_cond=class_cond, **kw)
    model.forward = spy
    t.fit()
    labels = torch.cat(seen)
    frac = (labels == model.num_classes).float().mean().item()
    assert labels.max() == model.num_classes and 0.15 < frac < 0.35, frac


def test_param_groups_of_hdit():
    "HDiT's groups: weight decay only on weight matrices, mapping network at lr/3, every parameter exactly once."
    from hdit_edu.model import HDiT, HDiTConfig
    model = HDiT(HDiTConfig.tiny(16, num_classes=3))
    opt = make_optimizer(model, lr=5e-4, weight_decay=1e-2)
    names = {id(p): n for n, p in model.named_parameters()}
    in_groups = [id(p) for g in opt.param_groups for p in g['params']]
    assert sorted(in_groups) == sorted(names) and len(in_groups) == len(set(in_groups))
    lrs = set()
    for g in opt.param_groups:
        lrs.add(g['lr'])
        for p in g['params']:
            if g['weight_decay'] > 0: assert p.ndim >= 2, names[id(p)]
            if names[id(p)].startswith('mapping.'): assert g['lr'] == pytest.approx(5e-4 / 3), names[id(p)]
    assert sorted(lrs) == pytest.approx([5e-4 / 3, 5e-4])
    assert {g['weight_decay'] for g in opt.param_groups} == {0.0, 1e-2}


def test_stream_sampler_shards_are_disjoint_and_cover_the_global_batch():
    B, N = 8, 2
    s = list(StreamSampler(20, seed=3, start=16, length=3 * B))
    per_rank = [[s[i:i + B][r * B // N:(r + 1) * B // N] for i in range(0, len(s), B)] for r in range(N)]
    for step in range(3):
        assert sorted(per_rank[0][step] + per_rank[1][step]) == sorted(s[step * B:(step + 1) * B])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='divisible'): TrainConfig(batch_size=10, grad_accum=4)
    with pytest.raises(ValueError, match='empty'): Trainer(TinyNet(), [], out_dir=None)


def test_a_small_real_run_learns(tmp_path):
    "A tiny HDiT on 16 px OpenMoji for 100 steps (< 60 s): the loss clearly falls; samples, curve, grids are written."
    from hdit_edu.data import ImageDataset, openmoji_dataset
    from hdit_edu.model import HDiT, small_hdit_config
    ds = ImageDataset(openmoji_dataset(size=16, limit=128), 16, hflip=False)
    torch.manual_seed(0)
    model = HDiT(small_hdit_config(16, num_classes=ds.num_classes, width=32, depths=(1, 2)))
    t0 = time.time()
    t = Trainer(model, ds, out_dir=str(tmp_path), steps=100, batch_size=8, progress=False, sample_n=4, sample_steps=10)
    t.fit()
    took = time.time() - t0
    first, last = sum(t.losses[:20]) / 20, sum(t.losses[-20:]) / 20
    print(f'100 steps in {took:.1f}s, {t.images_per_s:.1f} img/s, loss {first:.4f} -> {last:.4f}')
    assert last < 0.7 * first
    for f in ('samples.png', 'real.png', 'loss.png'): assert (tmp_path / f).exists(), f


def test_pretrained_openmoji64_is_a_trained_denoiser():
    "The shipped model loads in one line, fits in 25 MB, and denoises real OpenMoji images far better than chance."
    from hdit_edu.data import ImageDataset, openmoji_dataset
    from hdit_edu.diffusion import Denoiser
    from hdit_edu.model_files import PRETRAINED_DIR, load_pretrained
    from hdit_edu.model import small_hdit_config
    assert (PRETRAINED_DIR / 'openmoji64.safetensors').stat().st_size < 25 * 2**20
    m = load_pretrained('openmoji64')
    assert m.config == small_hdit_config(64, num_classes=3, attention='neighborhood',   # the paper's local attention
                                         class_names=['faces', 'nature', 'food'])
    assert m.num_classes == 3
    ds = ImageDataset(openmoji_dataset(64, limit=24), 64, hflip=False)
    x = torch.stack([ds[i][0] for i in range(len(ds))]); y = torch.tensor([ds[i][1] for i in range(len(ds))])
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    den = Denoiser(m)
    with torch.no_grad():
        for sigma in (0.3, 1.0):
            noisy = x + sigma * noise
            mse = ((den(noisy, torch.full((len(x),), sigma), class_cond=y) - x) ** 2).mean().item()
            trivial = ((noisy * 0.25 / (sigma ** 2 + 0.25) - x) ** 2).mean().item()   # model output 0 (untrained)
            assert mse < 0.1 * trivial, (sigma, mse, trivial)


def test_a_full_disk_keeps_the_last_good_checkpoint_with_one_clear_error(tmp_path, monkeypatch):
    import errno
    t = make_trainer(tmp_path, steps=2); t.fit()
    good = list_checkpoints(tmp_path)[-1]
    def full(tensors, path, *a, **kw): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(checkpoint, 'save_file', full)
    with pytest.raises(OSError, match=r'disk may be full: the last good checkpoint, .*step_0000002, is kept') as e:
        make_trainer(tmp_path, steps=3).fit()
    assert e.value.errno == errno.ENOSPC
    assert list_checkpoints(tmp_path) == [good] and read_checkpoint(tmp_path)['step'] == 2


def test_a_finished_run_reports_no_speed_for_this_session(tmp_path, capsys):
    make_trainer(tmp_path, steps=3).fit()
    t = make_trainer(tmp_path, steps=3); t.fit()
    assert t.step == 3 and t.session_steps == 0 and t.images_per_s == 0.
    assert 'nothing to train' in capsys.readouterr().out


def test_fit_runs_under_cpu_threads_and_restores_them(tmp_path, monkeypatch):
    seen = []
    import contextlib
    real = training.cpu_threads
    @contextlib.contextmanager
    def spy(*a, **kw):
        with real(*a, **kw) as n: seen.append(n); yield n
    monkeypatch.setattr(training, 'cpu_threads', spy)
    before = torch.get_num_threads()
    make_trainer(tmp_path, steps=1).fit()
    assert len(seen) == 1 and torch.get_num_threads() == before
    from hdit_edu.threads import cpu_threads
    assert real is cpu_threads                                  # the one from hdit_edu.threads, not a copy


def test_progress_without_a_terminal_prints_lines_with_eta(tmp_path, capsys):
    make_trainer(tmp_path, steps=4, progress=True, log_every=2).fit()
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith('step')]
    assert len(lines) == 3 and all('left' in l and 'img/s' in l for l in lines), lines   # steps 1, 2, 4


def test_labels_outside_the_model_are_refused_at_the_data_loader(tmp_path):
    from mp_train import TinyConfig
    from torch.utils.data import TensorDataset
    t = make_trainer(tmp_path, config=TinyConfig(num_classes=2))
    t.dataset = TensorDataset(torch.zeros(8, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 0, 1, 0]))
    with pytest.raises(ValueError, match=r"labels outside 0\.\.1 .*num_classes"): t.fit()


def test_class_names_travel_in_checkpoints(tmp_path):
    "A folder data set's class names go into the model config, the checkpoint and the loaded model."
    from hdit_edu.model import HDiT, HDiTConfig
    from hdit_edu.checkpoint import load_checkpoint_model
    class Named(torch.utils.data.Dataset):
        classes = ['apples', 'pears']
        def __len__(self): return 8
        def __getitem__(self, i): return torch.zeros(3, 16, 16), i % 2
    torch.manual_seed(0)
    model = HDiT(HDiTConfig.tiny(16, num_classes=2))
    Trainer(model, Named(), out_dir=str(tmp_path), steps=1, batch_size=4, progress=False, sample_n=0).fit()
    assert read_checkpoint(tmp_path)['model_config']['class_names'] == ['apples', 'pears']
    assert load_checkpoint_model(tmp_path).class_names == ['apples', 'pears']


def test_lr_factor_warms_up_then_follows_a_half_cosine():
    from hdit_edu.training import lr_factor
    f = [lr_factor(s, 50, warmup=10, schedule='cosine', final=0.1) for s in range(50)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])             # linear warm-up to 1
    assert f[10] == pytest.approx(1.) and f[-1] == pytest.approx(0.1)             # then 1 down to `final`
    assert f[30] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(20 / 39 * torch.pi)).item()))
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))              # never rises after warm-up
    assert [lr_factor(s, 50, warmup=5) for s in range(5, 50)] == [1.] * 45        # constant: the paper's


def test_the_cosine_schedule_sets_every_groups_lr_and_resumes_exactly(tmp_path):
    kw = dict(lr=1e-3, lr_schedule='cosine', warmup_steps=3, lr_final=0.2)
    straight = make_trainer(tmp_path / 'a', steps=10, **kw)
    seen = []
    straight.callbacks.append(lambda t: seen.append([g['lr'] for g in t.optimizer.param_groups]))
    straight.fit()
    base = [g['base_lr'] for g in straight.optimizer.param_groups]
    assert base[0] == pytest.approx(1e-3)
    for step, lrs in enumerate(seen):                                      # the lr each step was taken with
        f = training.lr_factor(step, 10, 3, 'cosine', 0.2)
        assert lrs == pytest.approx([b * f for b in base])
    assert seen[-1][0] == pytest.approx(2e-4) and seen[0][0] == pytest.approx(1e-3 / 3)
    make_trainer(tmp_path / 'b', steps=4, **kw).fit()
    resumed = make_trainer(tmp_path / 'b', steps=10, **kw)
    resumed.fit()
    assert resumed.losses == straight.losses                                # bit for bit across the resume
    _assert_same_state(resumed, straight)
    constant = make_trainer(tmp_path / 'c', steps=10, lr=1e-3)
    constant.fit()
    assert constant.losses[3:] != straight.losses[3:]                        # the schedule changes the run


def test_schedule_settings_are_checked_and_part_of_the_trajectory(tmp_path):
    with pytest.raises(ValueError, match="lr_schedule must be one of"): TrainConfig(lr_schedule='linear')
    with pytest.raises(ValueError, match='warmup_steps must be a whole number >= 0'): TrainConfig(warmup_steps=-1)
    with pytest.raises(ValueError, match=r'lr_final must be a finite number in \[0, 1\]'): TrainConfig(lr_final=1.5)
    make_trainer(tmp_path, steps=2).fit()
    with pytest.raises(ConfigMismatchError, match='lr_schedule'):
        make_trainer(tmp_path, steps=4, lr_schedule='cosine').fit()
    meta = Path(list_checkpoints(tmp_path)[-1]) / 'trainer.json'
    m = json.loads(meta.read_text())
    for k in ('lr_schedule', 'warmup_steps', 'lr_final'): del m['train_config'][k]   # as written before the fields
    meta.write_text(json.dumps(m))
    t = make_trainer(tmp_path, steps=4)
    t.fit(); assert t.step == 4 and t._resumed_from is not None                 # still resumes: it ran constant
    with pytest.raises(ConfigMismatchError, match='warmup_steps'): make_trainer(tmp_path, steps=4, warmup_steps=5).fit()
