"Checks of hdit_edu.model (HDiT) against the authors' k-diffusion implementation, and of its contract."
import json, math
from pathlib import Path
import pytest
import torch
import hdit_edu.model
from hdit_edu.model import HDiT, HDiTConfig, LevelConfig, hdit_b4, dit_b4, hdit_imagenet256, small_hdit_config
from hdit_edu.model_files import (config_from_k_diffusion, config_to_k_diffusion, from_k_diffusion, save_model,
                                  load_model, load_pretrained, pretrained_models, REFERENCE_FILE, load_reference,
                                  check_against_reference)
from hdit_edu.model_checks import check_class_labels
from hdit_edu.neighborhood import neighborhood_mask


def tiny_config(**kw):
    "Two levels (neighborhood 3x3 at 8x8 tokens, global at 4x4), class-conditional, ~0.3M parameters."
    levels = kw.pop('levels', [LevelConfig(2, 64, 'neighborhood', d_head=32, kernel_size=3),
                               LevelConfig(2, 128, 'global', d_head=32)])
    return HDiTConfig(levels, **{**dict(patch_size=2, input_size=16, num_classes=10, mapping_width=64), **kw})


def pretend_trained(model, std=0.1, seed=0):
    "Random weight matrices (zero-initialised ones included), so outputs and attention depend on everything."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2: p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture(scope='module')
def ref():
    return load_reference()                                           # the k-diffusion reference shipped in the package


def test_reference_ships_with_the_package():
    "The oracle is package data (setup.py package_data, MANIFEST.in), found relative to the imported package."
    assert REFERENCE_FILE.parent == Path(hdit_edu.model.__file__).parent / 'reference'
    assert REFERENCE_FILE.is_file() and (REFERENCE_FILE.parent / 'README.md').is_file()
    raw = torch.load(REFERENCE_FILE, weights_only=True)               # plain tensors and a JSON string: no pickled code
    cfg = json.loads(raw['config'])
    assert cfg['model']['type'] == 'image_transformer_v2' and cfg['model']['sigma_data'] == 0.5
    assert cfg['model']['loss_weighting'] == 'soft-min-snr' and cfg['dataset']['num_classes'] == 10
    assert {'state_dict', 'x', 'noise', 'sigma', 'cond_class_cond', 'inner_output', 'denoised', 'loss'} <= set(raw)


def test_missing_reference_fails_loudly(monkeypatch, tmp_path):
    monkeypatch.setattr(hdit_edu.model_files, 'REFERENCE_FILE', tmp_path / 'gone.pt')   # where it is read
    with pytest.raises(FileNotFoundError, match='k-diffusion reference .*gone.pt is missing'): check_against_reference()


def test_check_against_reference():
    "The public check: same parameter count, network output, EDM-denoised images and soft-min-snr loss as k-diffusion."
    errors = check_against_reference()
    print(errors)
    assert errors['parameters'] == errors['k_diffusion_parameters'] == 1166801
    assert errors['inner_output'] < 1e-4 and errors['denoised'] < 1e-4 and errors['loss'] < 1e-6


def test_reproduces_k_diffusion_inner_output(ref):
    model = from_k_diffusion(ref['config'], ref['state_dict']).eval()
    assert sum(p.numel() for p in model.parameters()) == ref['param_count'].item() == 1166801
    x, sigma, cc = ref['x'], ref['sigma'], ref['cond_class_cond']
    s = sigma[:, None, None, None]
    c_skip, c_out, c_in = 0.25 / (s ** 2 + 0.25), s * 0.5 / (s ** 2 + 0.25).sqrt(), 1 / (s ** 2 + 0.25).sqrt()
    x_noisy = x + ref['noise'] * s
    with torch.no_grad():
        out = model(x * c_in, sigma, class_cond=cc)                       # what the reference recorded as inner_output
        denoised = c_skip * x_noisy + c_out * model(x_noisy * c_in, sigma, class_cond=cc)
    err, err_d = (out - ref['inner_output']).abs().max().item(), (denoised - ref['denoised']).abs().max().item()
    print(f'max |inner_output - ref| = {err:.2e}, max |denoised - ref| = {err_d:.2e}')
    assert err < 1e-4 and err_d < 1e-4
    assert model.num_classes == 10 and model.class_emb.num_embeddings == 11


def test_k_diffusion_checkpoint_prefix_and_mismatch(ref):
    cfg = json.loads(json.dumps(ref['config']))
    sd = {'inner_model.' + k: v for k, v in ref['state_dict'].items()}   # keys as in a k-diffusion training checkpoint
    model = from_k_diffusion(cfg, sd)
    assert torch.equal(model.splits[0].fac, ref['state_dict']['splits.0.fac'])
    bad = json.loads(json.dumps(ref['config'])); bad['model']['widths'] = [64, 192]
    with pytest.raises(ValueError, match='do not match the model config'): from_k_diffusion(bad, ref['state_dict'])
    with torch.device('meta'): fast = from_k_diffusion(cfg, ref['state_dict'])   # built on meta, weights assigned
    assert not any(t.is_meta for t in fast.state_dict().values())
    x, s, c = ref['x'][:1], ref['sigma'][:1], ref['cond_class_cond'][:1]
    with torch.no_grad(): assert torch.equal(fast(x, s, class_cond=c), model(x, s, class_cond=c))


def test_imagenet_model_on_meta_device():
    kd = {'model': {'type': 'image_transformer_v2', 'input_channels': 3, 'input_size': [256, 256],
                    'patch_size': [4, 4], 'depths': [2, 2, 16], 'widths': [384, 768, 1536]},
          'dataset': {'num_classes': 1000}}
    with torch.device('meta'):
        model = from_k_diffusion(kd)
        y = model(torch.randn(2, 3, 256, 256), torch.ones(2), class_cond=torch.tensor([3, 1000]))
    n = sum(p.numel() for p in model.parameters())
    assert n == 557_416_522 and round(n / 1e6) == 557
    assert y.shape == (2, 3, 256, 256) and y.is_meta
    assert model.config == hdit_imagenet256()


def test_k_diffusion_config_defaults_and_round_trip():
    kd = {'model': {'type': 'image_transformer_v2', 'input_channels': 1, 'input_size': [32, 64], 'patch_size': [2, 2],
                    'depths': [1, 2], 'widths': [64, 128], 'dropout_rate': 0.1,
                    'self_attns': [{'type': 'shifted-window', 'd_head': 32, 'window_size': 4}, {'type': 'global', 'd_head': 32}]}}
    cfg = config_from_k_diffusion(kd)
    assert [lv.d_ff for lv in cfg.levels] == [192, 384] and cfg.mapping_width == 256 and cfg.mapping_d_ff == 768
    assert [lv.dropout for lv in cfg.levels] == [0.1, 0.1] and cfg.num_classes == 0 and cfg.input_size == (32, 64)
    assert config_from_k_diffusion(config_to_k_diffusion(cfg)) == cfg
    default = config_from_k_diffusion({'model': {'type': 'image_transformer_v2', 'input_channels': 3, 'input_size': [64, 64],
                                                 'patch_size': [4, 4], 'depths': [2, 2], 'widths': [128, 256]}})
    assert [(lv.attention, lv.d_head, lv.kernel_size) for lv in default.levels] == [('neighborhood', 64, 7), ('global', 64, 7)]
    with pytest.raises(ValueError, match='image_transformer_v2'): config_from_k_diffusion({'model': {'type': 'image_v1'}})


def test_clear_errors():
    model = HDiT(tiny_config())
    x, s, c = torch.randn(1, 3, 16, 16), torch.ones(1), torch.tensor([0])
    with pytest.raises(ValueError, match=r'multiples of patch_size \* 2\*\*\(levels-1\) = 4x4'): model(torch.randn(1, 3, 18, 16), s, class_cond=c)
    with pytest.raises(ValueError, match='input_channels=3'): model(torch.randn(1, 1, 16, 16), s, class_cond=c)
    with pytest.raises(ValueError, match='pass class_cond'): model(x, s)
    with pytest.raises(ValueError, match=r'outside 0\.\.10'): check_class_labels(torch.tensor([11]), 10)   # at the edges
    with pytest.raises(ValueError, match=r'outside 0\.\.10'): check_class_labels(torch.tensor([-1, 3]), 10)
    with pytest.raises(ValueError, match=r'outside 0\.\.9'): check_class_labels([10], 10, null_ok=False)
    check_class_labels(torch.tensor([0, 10]), 10)
    with pytest.raises(ValueError, match='integer tensor'): model(x, s, class_cond=torch.tensor([1.]))
    with pytest.raises(ValueError, match='smaller than its neighborhood kernel'): model(torch.randn(1, 3, 4, 4), s, class_cond=c)
    with pytest.raises(ValueError, match=r'\[batch, channels, height, width\]'): model(torch.randn(3, 16, 16), s, class_cond=c)
    with pytest.raises(ValueError, match='aug_cond'): model(x, s, class_cond=c, aug_cond=torch.zeros(1, 4))
    with pytest.raises(ValueError, match='mapping_cond'): model(x, s, class_cond=c, mapping_cond=torch.zeros(1, 4))
    uncond = HDiT(tiny_config(num_classes=0))
    with pytest.raises(ValueError, match='unconditional'): uncond(x, s, class_cond=c)
    with pytest.raises(ValueError, match='neighborhood kernel 7'): hdit_b4(16)
    with pytest.raises(ValueError, match='multiple of d_head'): LevelConfig(2, 100, 'global')
    with pytest.raises(ValueError, match='use one of'): LevelConfig(2, 128, 'local')
    with pytest.raises(ValueError, match='windows do not tile'):
        tiny_config(levels=[LevelConfig(1, 64, 'shifted-window', d_head=32, window_size=3), LevelConfig(1, 64, 'global', d_head=32)])


def test_contract_shapes_and_zero_init():
    model = HDiT(tiny_config(mapping_cond_dim=5))
    x = torch.randn(2, 3, 16, 32)                                       # non-square images work
    with torch.no_grad():
        y = model(x, torch.tensor([0.1, 5.]), class_cond=torch.tensor([1, 10]), mapping_cond=torch.randn(2, 5),
                  aug_cond=torch.randn(2, 9))
    assert y.shape == x.shape and torch.equal(y, torch.zeros_like(x))  # patch_out starts at zero
    pretend_trained(model)
    with torch.no_grad():
        a = model(x, 2.0, class_cond=torch.tensor([1, 10]), mapping_cond=torch.zeros(2, 5))          # scalar sigma
        b = model(x, torch.full((2,), 2.0), class_cond=torch.tensor([1, 10]), mapping_cond=torch.zeros(2, 5))
        c = model(x, torch.full((2,), 2.0), class_cond=torch.tensor([2, 10]), mapping_cond=torch.zeros(2, 5))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(b[0], c[0]) and torch.allclose(b[1], c[1])   # the class only changes its own sample


def test_bfloat16_forward():
    import copy
    model32 = pretend_trained(HDiT(tiny_config()))
    model = copy.deepcopy(model32).to(torch.bfloat16)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x.bfloat16(), torch.ones(2), class_cond=torch.tensor([0, 1]))
        y32 = model32(x, torch.ones(2), class_cond=torch.tensor([0, 1]))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    assert (y.float() - y32).abs().mean() < 0.1 * y32.abs().mean()     # bfloat16 rounding only (measured ~5%)


def edm_loss(model, x, cls, generator):
    sigma = torch.exp(torch.randn(x.shape[0], generator=generator) * 1.2 - 1.2)
    noise = torch.randn(x.shape, generator=generator)
    s = sigma[:, None, None, None]
    c_skip, c_out, c_in = 0.25 / (s ** 2 + 0.25), s * 0.5 / (s ** 2 + 0.25).sqrt(), 1 / (s ** 2 + 0.25).sqrt()
    x_noisy = x + noise * s
    return (model(x_noisy * c_in, sigma, class_cond=cls) - (x - c_skip * x_noisy) / c_out).pow(2).mean()


def test_tiny_model_trains_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = HDiT(tiny_config())
    opt = torch.optim.AdamW(model.param_groups(lr=1e-3, weight_decay=1e-2), betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(0)
    x, cls = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1, torch.tensor([0, 3, 7, 10])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    first_grad = {}
    for step in range(5):
        opt.zero_grad()
        loss = edm_loss(model, x, cls, g)
        loss.backward()
        assert math.isfinite(loss.item())
        for n, p in model.named_parameters():
            if p.grad is not None and p.grad.abs().sum() > 0: first_grad.setdefault(n, step)
        opt.step()
    names = [n for n, _ in model.named_parameters()]
    # zero-initialised output layers: only patch_out gets a gradient at initialisation, then one layer of zeros per step
    assert [n for n, s in first_grad.items() if s == 0] == ['patch_out.proj.weight']
    assert all(first_grad[n] == 1 for n in names if n.endswith(('self_attn.out_proj.weight', 'ff.down_proj.weight')))
    assert all(first_grad[n] == 2 for n in names if n.endswith(('qkv_proj.weight', 'norm.linear.weight')))
    assert all(first_grad[n] == 3 for n in ('time_in_proj.weight', 'aug_in_proj.weight', 'class_emb.weight'))
    assert sorted(first_grad) == sorted(names)                         # every parameter gets gradients
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())   # and changes


def test_shifted_window_and_no_attention_levels():
    cfg = tiny_config(levels=[LevelConfig(2, 64, 'shifted-window', d_head=32, window_size=4),
                              LevelConfig(1, 64, 'none'), LevelConfig(2, 128, 'global', d_head=32)], input_size=32)
    model = pretend_trained(HDiT(cfg))
    shifts = [layer.self_attn.window_shift for layer in list(model.down_levels[0]) + list(model.up_levels[0])]
    assert shifts == [0, 2, 0, 2]                                      # alternate, counting on from down to up (k-diffusion)
    assert not hasattr(model.down_levels[1][0], 'self_attn')
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(): y = model(x, torch.ones(1), class_cond=torch.tensor([4]))
    assert y.shape == x.shape and torch.isfinite(y).all()
    maps = model.attention_maps(x, torch.ones(1), class_cond=torch.tensor([4]))
    assert [(m['stage'], m['level'], m['kind'], m['token_hw']) for m in maps] == \
        [('down', 0, 'shifted-window', (16, 16))] * 2 + [('mid', 2, 'global', (4, 4))] * 2 + [('up', 0, 'shifted-window', (16, 16))] * 2
    assert ((maps[0]['weights'][0, 0, 5, 5] > 0).sum() == 16)          # unshifted 4x4 window


def test_attention_maps_are_the_attention_the_model_uses():
    model = pretend_trained(HDiT(tiny_config()))
    x, s, c = torch.randn(2, 3, 16, 16), torch.tensor([0.3, 3.]), torch.tensor([1, 2])
    maps = model.attention_maps(x, s, class_cond=c)
    assert len(maps) == 6 and all(blk_off is None for blk_off in
                                  [l.self_attn.record for lvl in [*model.down_levels, model.mid_level, *model.up_levels] for l in lvl])
    na = maps[0]['weights']
    assert na.shape == (2, 2, 8, 8, 8, 8)
    torch.testing.assert_close(na.sum((-2, -1)), torch.ones(2, 2, 8, 8))
    allowed = neighborhood_mask(8, 8, 3).reshape(8, 8, 8, 8)
    assert torch.equal(na[0, 0] > 0, allowed)
    # replay the first block with the recorded weights: same output as the block itself
    blk = model.down_levels[0][0].self_attn
    captured = {}
    h = blk.register_forward_hook(lambda m, inp, out: captured.update(inp=inp, out=out))
    with torch.no_grad(): model(x, s, class_cond=c)
    h.remove()
    xin, pos, cond = captured['inp']
    with torch.no_grad():
        q, k, v = blk.qkv(xin, pos, cond)
        av = torch.einsum('bnqk,bknd->bqnd', na.reshape(2, 2, 64, 64), v.reshape(2, 64, 2, 32)).reshape(2, 8, 8, 64)
        torch.testing.assert_close(xin + blk.out_proj(av), captured['out'], atol=1e-5, rtol=1e-5)


def test_param_groups_follow_k_diffusion():
    model = HDiT(tiny_config(mapping_cond_dim=3))
    groups = {g['name']: g for g in model.param_groups(lr=2e-4, weight_decay=0.1)}
    names = [n for g in groups.values() for n in g['param_names']]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())    # each parameter exactly once
    assert all(len(g['params']) == len(g['param_names']) for g in groups.values())
    lr_wd = {k: (g['lr'], g['weight_decay']) for k, g in groups.items()}
    assert lr_wd == {'decay': (2e-4, 0.1), 'no_decay': (2e-4, 0.), 'mapping_decay': (2e-4 / 3, 0.1), 'mapping_no_decay': (2e-4 / 3, 0.)}
    dec, nodec, mdec, mnodec = (set(groups[k]['param_names']) for k in ('decay', 'no_decay', 'mapping_decay', 'mapping_no_decay'))
    assert {'patch_in.proj.weight', 'patch_out.proj.weight', 'merges.0.proj.weight', 'splits.0.proj.weight',
            'mid_level.0.self_attn.qkv_proj.weight', 'up_levels.0.1.ff.up_proj.weight'} <= dec
    assert {'splits.0.fac', 'out_norm.scale', 'mid_level.1.self_attn.scale', 'class_emb.weight', 'time_in_proj.weight',
            'aug_in_proj.weight', 'mapping_cond_in_proj.weight'} <= nodec
    assert {'down_levels.0.0.self_attn.norm.linear.weight', 'mid_level.0.ff.norm.linear.weight',
            'mapping.blocks.0.up_proj.weight', 'mapping.blocks.1.down_proj.weight'} <= mdec
    assert mnodec == {'mapping.in_norm.scale', 'mapping.out_norm.scale', 'mapping.blocks.0.norm.scale', 'mapping.blocks.1.norm.scale'}
    assert not any('freqs' in n or 'emb.weight' in n and 'class' not in n for n in names)   # buffers are not parameters


def test_save_load_round_trip_and_errors(tmp_path):
    model = pretend_trained(HDiT(tiny_config()))
    path = save_model(model, tmp_path / 'sub' / 'm')
    assert path == tmp_path / 'sub' / 'm.safetensors' and (tmp_path / 'sub' / 'm.json').exists()
    loaded = load_model(tmp_path / 'sub' / 'm.safetensors')
    assert loaded.config == model.config and not loaded.training
    x, s, c = torch.randn(2, 3, 16, 16), torch.tensor([0.5, 3.]), torch.tensor([1, 10])
    with torch.no_grad(): assert torch.equal(loaded(x, s, class_cond=c), model.eval()(x, s, class_cond=c))
    (tmp_path / 'sub' / 'm.json').unlink()                              # the config in the file's metadata suffices
    assert load_model(tmp_path / 'sub' / 'm').config == model.config
    with pytest.raises(FileNotFoundError, match='no model weights'): load_model(tmp_path / 'missing')
    (tmp_path / 'bad.safetensors').write_bytes(b'not a safetensors file at all')
    with pytest.raises(ValueError, match='truncated or damaged'): load_model(tmp_path / 'bad')
    save_model(HDiT(tiny_config(num_classes=0)), tmp_path / 'other')
    (tmp_path / 'other.json').write_text(json.dumps(tiny_config().to_dict()))   # config says 10 classes, weights have none
    with pytest.raises(ValueError, match='missing class_emb.weight'): load_model(tmp_path / 'other')
    (tmp_path / 'other.json').write_text('{"levels": "nonsense"}')
    with pytest.raises(ValueError, match='not a valid HDiTConfig'): load_model(tmp_path / 'other')
    with pytest.raises(FileNotFoundError, match='not included in this installation'): load_pretrained('no-such-model')
    assert pretrained_models() == ['openmoji-text', 'openmoji64']   # the quality nets next to them are not HDiTs
    with pytest.raises(FileNotFoundError, match='available: openmoji-text, openmoji64[.]'): load_pretrained('featnet_openmoji')


def test_presets_match_the_paper():
    assert [(lv.depth, lv.width, lv.attention) for lv in hdit_b4(128).levels] == [(2, 384, 'neighborhood'), (11, 768, 'global')]
    assert [lv.width for lv in hdit_b4(1024).levels] == [384, 384, 384, 384, 768]
    d = dit_b4(256)
    assert len(d.levels) == 1 and (d.levels[0].depth, d.levels[0].width, d.levels[0].heads) == (12, 768, 12)
    assert HDiTConfig.from_dict(json.loads(json.dumps(hdit_b4(512).to_dict()))) == hdit_b4(512)
    tiny = HDiTConfig.tiny(16, num_classes=5)
    with torch.no_grad(): y = HDiT(tiny)(torch.randn(2, 3, 16, 16), torch.ones(2), class_cond=torch.tensor([0, 5]))
    assert y.shape == (2, 3, 16, 16) and sum(p.numel() for p in HDiT(tiny).parameters()) < 1_000_000


def test_pretrained_missing_from_the_imported_package(monkeypatch, tmp_path):
    "A copy of hdit_edu without its pretrained/ files (or one shadowing the install from the cwd) is named, with what to do."
    pkg = tmp_path / 'hdit_edu'
    (pkg / 'pretrained').mkdir(parents=True)
    monkeypatch.setattr(hdit_edu.model_files, 'PACKAGE_DIR', pkg)          # the plumbing's home: model_files
    monkeypatch.setattr(hdit_edu.model_files, 'PRETRAINED_DIR', pkg / 'pretrained')
    assert pretrained_models() == []
    with pytest.raises(FileNotFoundError) as e: load_pretrained()
    msg = str(e.value)
    assert f'the hdit_edu package that Python imported, from {pkg}, has no pretrained models' in msg
    assert 'reinstall hdit_edu' in msg and 'available: none' not in msg and '\n' not in msg
    monkeypatch.chdir(tmp_path)                                       # a folder named hdit_edu in the cwd shadows the install
    with pytest.raises(FileNotFoundError, match="folder 'hdit_edu' in the current directory, which shadows the installed "
                                                "package.*start Python in another directory"):
        load_pretrained('openmoji64')


def test_forward_has_no_data_dependent_checks_and_compiles_fullgraph():
    "No `.any()`/`.item()` on values in forward: `torch.compile(fullgraph=True)` traces a class-conditional HDiT."
    model = pretend_trained(HDiT(HDiTConfig.tiny(16, num_classes=3))).eval()
    x, s, c = torch.randn(2, 3, 16, 16), torch.tensor([0.5, 2.]), torch.tensor([0, 3])
    compiled = torch.compile(model, fullgraph=True, backend='eager')   # graph capture only: fast on any CPU
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, s, class_cond=c), model(x, s, class_cond=c))
    with pytest.raises(ValueError, match='shape'): model(x, s, class_cond=torch.tensor([0, 1, 2]))   # shapes still checked


def test_an_int_class_cond_is_broadcast_to_the_batch():
    model = pretend_trained(HDiT(tiny_config()))
    x, s = torch.randn(3, 3, 16, 16), torch.ones(3)
    with torch.no_grad(): torch.testing.assert_close(model(x, s, class_cond=4), model(x, s, class_cond=torch.full((3,), 4)))


def test_one_small_config_and_class_names_travel_with_saved_models(tmp_path):
    assert HDiTConfig.tiny(16, num_classes=3) == small_hdit_config(16, 3, depths=(1, 2), patch_size=2)
    cfg = HDiTConfig.tiny(16, num_classes=2, class_names=['cats', 'dogs'])
    save_model(HDiT(cfg), tmp_path / 'm')
    m = load_model(tmp_path / 'm')
    assert m.class_names == ['cats', 'dogs'] and m.config.class_names == ['cats', 'dogs']
    assert json.loads((tmp_path / 'm.json').read_text())['class_names'] == ['cats', 'dogs']
    with pytest.raises(ValueError, match='class_names'): HDiTConfig.tiny(16, num_classes=3, class_names=['a'])


def test_zero_initialisation_unfolds_one_layer_of_zeros_per_step():
    "The model page's account of the first AdamW steps: which parameters get their first gradient at which step."
    import re
    from hdit_edu.diffusion import edm_scalings
    torch.manual_seed(0)
    model, x, cls = HDiT(tiny_config()), torch.rand(4, 3, 16, 16) * 2 - 1, torch.tensor([0, 3, 7, 10])
    opt, first_grad, losses = torch.optim.AdamW(model.param_groups(lr=1e-3)), {}, []
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = [n for n, _ in model.named_parameters()]
    for step in range(5):
        sigma = torch.exp(torch.randn(4) * 1.2 - 1.2)
        c_skip, c_out, c_in = (c[:, None, None, None] for c in edm_scalings(sigma))
        x_noisy = x + torch.randn_like(x) * sigma[:, None, None, None]
        loss = (model(x_noisy * c_in, sigma, class_cond=cls) - (x - c_skip * x_noisy) / c_out).pow(2).mean()
        opt.zero_grad(); loss.backward()
        for n, p in model.named_parameters():
            if p.grad is not None and p.grad.abs().sum() > 0: first_grad.setdefault(n, step)
        opt.step(); losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert [n for n, s in first_grad.items() if s == 0] == ['patch_out.proj.weight']
    assert sorted(n for n, s in first_grad.items() if s == 1) == sorted(
        n for n in names if n.startswith(('patch_in', 'merges', 'splits', 'out_norm'))
        or n.endswith(('out_proj.weight', 'ff.down_proj.weight')))
    assert all(first_grad[n] == 3 for n in names if n.startswith(('time', 'aug', 'class', 'mapping.in_norm',
                                                                 'mapping.out_norm'))
               or n.endswith('mapping.blocks.0.down_proj.weight'))
    assert sorted(first_grad) == sorted(names)                                        # every parameter gets gradients
    assert [n for n in names if torch.equal(model.get_parameter(n), before[n])] == []  # and every parameter has moved
    kind = lambda n: re.sub(r'^(down_levels|up_levels|mid_level)\.', '', re.sub(r'\.\d+', '', n))
    assert {kind(n) for n, s in first_grad.items() if s == 2} == {
        'ff.norm.linear.weight', 'ff.up_proj.weight', 'self_attn.norm.linear.weight', 'self_attn.qkv_proj.weight',
        'self_attn.scale'}


def test_config_table():
    assert HDiTConfig.tiny(16).table().startswith('| level | tokens |')
