"Text prompts: captions, the tokenizer, the text encoder, cross-attention, sampling and training with prompts."
import warnings
import pytest
import torch
import torch.nn.functional as F
from hdit_edu.text import (WordTokenizer, TextEncoder, CrossAttentionBlock, caption_words, names_a_side,
                           PAD, BOS, UNK)
from hdit_edu.model import HDiT, HDiTConfig, small_hdit_config
from hdit_edu.sampling import sample, CFGDenoiser
from hdit_edu.editing import inpaint, img2img
from hdit_edu.diffusion import Denoiser
from hdit_edu.flops import flop_breakdown, count_flops

VOCAB = ['red', 'blue', 'heart', 'fox', 'left', 'fist', 'facing']

def text_model(**kw):
    torch.manual_seed(0)
    return HDiT(small_hdit_config(16, width=32, depths=(1, 1), patch_size=2, text_vocab=VOCAB, text_width=32,
                                  text_depth=1, text_max_len=4, **kw))

def test_caption_words():
    assert caption_words('Thumbs up: medium-light skin_tone') == ['thumbs', 'up', 'medium', 'light', 'skin', 'tone']
    assert caption_words('keycap #') == ['keycap', '#']
    assert caption_words('') == []
    with pytest.raises(TypeError, match='must be a string'): caption_words(3)

def test_names_a_side():
    assert names_a_side('left-facing fist') and names_a_side('right arrow')
    assert not names_a_side('red heart') and not names_a_side('leftover')

def test_tokenizer_roundtrip_and_specials():
    tok = WordTokenizer(VOCAB, max_len=4)
    ids = tok.encode(['red heart', ''])
    assert ids.shape == (2, 5) and ids.dtype == torch.long
    assert ids[0].tolist() == [BOS, 3, 5, PAD, PAD] and ids[1].tolist() == [BOS, PAD, PAD, PAD, PAD]
    assert tok.decode(ids) == ['red heart', '']
    assert len(tok) == 3 + len(VOCAB)
    assert WordTokenizer.from_captions(['red heart', 'blue heart']).vocab == ['blue', 'heart', 'red']
    with pytest.raises(ValueError, match='twice'): WordTokenizer(['a', 'a'])

def test_tokenizer_warns_unknown_and_long():
    tok = WordTokenizer(VOCAB, max_len=4)
    with pytest.warns(UserWarning, match="never saw 'purple'"): ids = tok.encode('purple heart')
    assert ids[0, 1] == UNK
    with pytest.warns(UserWarning, match='cut to their first 4 words'): ids = tok.encode('red red red red red red')
    assert (ids[0, 1:] == 3).all()
    with warnings.catch_warnings():
        warnings.simplefilter('error'); tok.encode('red heart')          # known words: no warning

def test_text_encoder_ignores_padding_and_pools():
    torch.manual_seed(0)
    enc = TextEncoder(VOCAB, width=32, depth=2, max_len=4, d_head=16)   # 3 special tokens + 7 words
    for p in enc.parameters(): torch.nn.init.normal_(p, std=0.3)       # not the zero init: a real test
    a = torch.tensor([[BOS, 3, 4, PAD, PAD]])
    x, mask, pooled = enc(a)
    assert x.shape == (1, 5, 32) and mask.tolist() == [[True, True, True, False, False]]
    x2, _, pooled2 = enc(a[:, :3])                                       # the same prompt without padding
    torch.testing.assert_close(x[:, :3], x2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, x2.mean(1), atol=1e-5, rtol=1e-5)

def test_cross_attention_matches_naive_and_masks():
    torch.manual_seed(0)
    blk = CrossAttentionBlock(32, 24, 16, 8)
    for p in blk.parameters(): torch.nn.init.normal_(p, std=0.2)
    with torch.no_grad(): blk.scale.copy_(torch.tensor([10., 4.]))      # per-head scales, positive
    x, text, cond = torch.randn(2, 3, 4, 32), torch.randn(2, 5, 24), torch.randn(2, 8)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    out = blk(x, text, mask, cond)
    # naive: AdaRMSNorm both sides, cosine logits times the per-head scale, masked softmax, zero-init projection
    def ada(t, lin): return t * (lin(cond).view(2, *[1] * (t.ndim - 2), -1) + 1) * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6)
    q = blk.q_proj(ada(x, blk.norm.linear)).reshape(2, 12, 2, 16)
    k, v = blk.kv_proj(ada(text, blk.text_norm.linear)).reshape(2, 5, 2, 2, 16).unbind(2)
    logits = torch.einsum('bqhd,bkhd->bhqk', F.normalize(q, dim=-1), F.normalize(k, dim=-1)) * blk.scale[:, None, None]
    w = logits.masked_fill(~mask[:, None, None], float('-inf')).softmax(-1)
    ref = x + blk.out_proj(torch.einsum('bhqk,bkhd->bqhd', w, v).reshape(2, 3, 4, 32))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    text2 = text.clone(); text2[0, 2:] = 100.                         # masked tokens: no effect
    torch.testing.assert_close(blk(x, text2, mask, cond)[0], out[0])

def test_config_without_text_is_todays_model():
    a, b = HDiT(small_hdit_config(32)), text_model()
    assert a.text_encoder is None and not any('cross_attn' in n or 'text' in n for n, _ in a.named_parameters())
    assert any('cross_attn' in n for n, _ in b.named_parameters())
    d = small_hdit_config(32).to_dict()
    assert HDiTConfig.from_dict(d) == small_hdit_config(32)
    old = {k: v for k, v in d.items() if not k.startswith('text') and k != 'cross_attention'}
    assert HDiTConfig.from_dict(old).text_vocab is None                # configs saved before text still load

def test_cross_attention_levels_and_checks():
    m = text_model(cross_attention=[1])
    assert not any('down_levels.0' in n and 'cross_attn' in n for n, _ in m.named_parameters())
    assert any('mid_level' in n and 'cross_attn' in n for n, _ in m.named_parameters())
    assert text_model(text_pooled=False).text_pooled_in_proj is None
    with pytest.raises(ValueError, match='do not exist'): text_model(cross_attention=[5])
    with pytest.raises(ValueError, match='ignore the text'): text_model(cross_attention=[], text_pooled=False)

def test_forward_checks_text():
    m, x = text_model(), torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match='this model reads text'): m(x, torch.ones(2))
    with pytest.raises(ValueError, match='token ids'): m(x, torch.ones(2), text=torch.zeros(2, 5))
    with pytest.raises(ValueError, match='reads no text'):
        HDiT(HDiTConfig.tiny(16))(x, torch.ones(2), text=torch.ones(2, 3, dtype=torch.long))
    assert HDiT(HDiTConfig.tiny(16)).text_encoder is None

def open_zero_inits(m):
    "Give the zero-initialised projections (outputs, AdaRMSNorm scales) random weights, as training soon does."
    for n, p in m.named_parameters():
        if any(k in n for k in ('out_proj', 'patch_out', 'down_proj', 'norm.linear')): torch.nn.init.normal_(p, std=0.1)
    return m

def test_gradients_reach_text_paths():
    m = open_zero_inits(text_model())
    x, ids = torch.randn(2, 3, 16, 16), m.text_encoder.tokenize(['red heart', 'blue fox'])
    m(x, torch.ones(2), text=ids).square().mean().backward()
    g = {n: p.grad for n, p in m.named_parameters()}
    assert g['text_pooled_in_proj.weight'].abs().sum() > 0
    assert g['down_levels.0.0.cross_attn.out_proj.weight'].abs().sum() > 0   # zero-init, but learns
    assert g['text_encoder.embed.weight'].abs().sum() > 0
    m.zero_grad(); m.down_levels[0][0].cross_attn.out_proj.weight.data.zero_()  # cross-attention closed...
    for lv in (*m.down_levels, *m.up_levels, m.mid_level):
        for layer in lv: layer.cross_attn.out_proj.weight.data.zero_()
    m(x, torch.ones(2), text=ids).square().mean().backward()
    assert g['text_encoder.embed.weight'] is not None and m.text_encoder.embed.weight.grad.abs().sum() > 0  # ...pooled path

def test_prompt_changes_output_once_trained_paths_are_open():
    m = open_zero_inits(text_model())
    x = torch.randn(1, 3, 16, 16)
    a, b = (m(x, torch.ones(1), text=m.text_encoder.tokenize(t)) for t in ('red heart', 'blue heart'))
    assert (a - b).abs().max() > 1e-3

def test_cross_attention_maps():
    m = text_model()
    maps = m.attention_maps(torch.randn(2, 3, 16, 16), torch.ones(2), text=m.text_encoder.tokenize(['red heart', 'fox']),
                            kind='cross_attn')
    assert len(maps) == 3 and all(d['kind'] == 'cross' for d in maps)     # down, middle, up
    w = maps[0]['weights']                                   # [b, heads, h, w, text tokens]
    assert w.shape == (2, 1, 8, 8, 5)                         # one head of 32 at width 32
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    assert (w[1, ..., 2:] == 0).all()                         # 'fox': <bos>, fox, then padding

def test_flops_count_cross_attention():
    m, m0 = text_model(), HDiT(small_hdit_config(16, width=32, depths=(1, 1), patch_size=2))
    br = flop_breakdown(m, (3, 16, 16))
    # level 0: 64 tokens attend to 5 text tokens, QK^T and AV, width 32, in 2 layers (down and up)
    blk = m.down_levels[0][0].cross_attn
    assert blk.attention_macs(8, 8, 5) == 2 * 64 * 5 * 32
    assert br[('level 0', 'attention')] == flop_breakdown(m0, (3, 16, 16))[('level 0', 'attention')] + 2 * 2 * 64 * 5 * 32
    assert count_flops(m, (3, 16, 16)) > count_flops(m0, (3, 16, 16))

def test_compile_fullgraph_matches_eager():
    m = open_zero_inits(text_model()).eval()
    x, s, ids = torch.randn(2, 3, 16, 16), torch.ones(2), m.text_encoder.tokenize(['red heart', ''])
    eager = m(x, s, text=ids)
    compiled = torch.compile(m, fullgraph=True, backend='aot_eager')(x, s, text=ids)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)

def test_sample_with_prompts_and_errors():
    m = text_model()
    a = sample(m, n=2, size=16, steps=2, prompt='red heart', seed=0)
    b = sample(m, n=2, size=16, steps=2, prompt=['red heart', 'red heart'], seed=0)
    torch.testing.assert_close(a, b)
    sample(m, n=2, size=16, steps=2, prompt='fox', cfg_scale=3.)
    with pytest.raises(ValueError, match='list of n = 2 strings'): sample(m, n=2, size=16, steps=2, prompt=['fox'])
    with pytest.raises(ValueError, match='reads no text'):
        sample(HDiT(HDiTConfig.tiny(16)), n=2, size=16, steps=2, prompt='fox')
    with pytest.warns(UserWarning, match="never saw 'zebra'"): sample(m, n=1, size=16, steps=1, prompt='zebra')

def test_cfg_against_the_empty_prompt():
    m = open_zero_inits(text_model()).eval()
    den = Denoiser(m)
    x, s, ids = torch.randn(2, 3, 16, 16), torch.ones(2), m.text_encoder.tokenize(['red heart', 'fox'])
    empty = m.text_encoder.tokenize(['', ''])
    want = den(x, s, text=empty) + 3 * (den(x, s, text=ids) - den(x, s, text=empty))
    torch.testing.assert_close(CFGDenoiser(den, 3., text=True)(x, s, text=ids), want, atol=1e-5, rtol=1e-4)

def test_editing_with_prompts():
    m = text_model()
    img = torch.rand(1, 3, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool); mask[..., 4:12, 4:12] = True
    out = inpaint(m, img, mask, steps=2, prompt='fox', cfg_scale=2.)
    assert torch.equal(out[..., ~mask[0, 0]], img[..., ~mask[0, 0]])
    img2img(m, img, steps=2, prompt='red heart', cfg_scale=2.)
    with pytest.raises(ValueError, match='reads no text'):
        img2img(HDiT(HDiTConfig.tiny(16)), img, steps=2, prompt='fox')


# image prompts: the mapping network's single-vector path fed an image embedding
from hdit_edu.prompts import image_prompt_embedding
from hdit_edu.training import Trainer, TrainConfig


def test_image_prompt_embedding_shape_and_length():
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    e = image_prompt_embedding(x)
    assert e.shape == (3, 64)
    torch.testing.assert_close(e.norm(dim=-1), torch.full((3,), 8.))
    torch.testing.assert_close(image_prompt_embedding(x[:1]), e[:1], atol=1e-5, rtol=1e-5)   # per image


def test_sample_with_mapping_cond_guides_against_zeros():
    torch.manual_seed(0)
    m = open_zero_inits(HDiT(small_hdit_config(16, width=32, depths=(1, 1), patch_size=2, mapping_cond_dim=64))).eval()
    for p in m.parameters():
        if p.ndim == 2 and p.abs().sum() == 0: torch.nn.init.normal_(p, std=0.1)
    den = Denoiser(m)
    x, s, e = torch.randn(2, 3, 16, 16), torch.ones(2), torch.randn(2, 64)
    want = den(x, s, mapping_cond=torch.zeros(2, 64)) + 2 * (den(x, s, mapping_cond=e) - den(x, s, mapping_cond=torch.zeros(2, 64)))
    torch.testing.assert_close(CFGDenoiser(den, 2., mapping=True)(x, s, mapping_cond=e), want, atol=1e-5, rtol=1e-4)
    a = sample(m, n=2, size=16, steps=2, mapping_cond=e[0])                      # one vector for all
    b = sample(m, n=2, size=16, steps=2, mapping_cond=e[:1].expand(2, -1))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r'shape \[64\], \[1, 64\] or \[n, 64\]'):
        sample(m, n=2, size=16, steps=2, mapping_cond=torch.zeros(3, 64))
    with pytest.raises(ValueError, match='NaN'): sample(m, n=2, size=16, steps=2, mapping_cond=torch.full((64,), float('nan')))
    with pytest.raises(ValueError, match='mapping_cond_dim=0'):
        sample(HDiT(HDiTConfig.tiny(16)), n=2, size=16, steps=2, mapping_cond=e[0])


def test_trainer_feeds_image_prompts_of_the_clean_images():
    torch.manual_seed(0)
    m = HDiT(small_hdit_config(16, width=32, depths=(1, 1), patch_size=2, mapping_cond_dim=64))
    data = [(torch.rand(3, 16, 16) * 2 - 1, 0) for _ in range(8)]
    seen = []
    def embed(x):
        seen.append(x.clone()); return image_prompt_embedding(x)
    t = Trainer(m, data, TrainConfig(out_dir=None, steps=2, batch_size=4, progress=False, cond_dropout=0.5,
                                     hflip=False), mapping_cond=embed)
    t.fit()
    assert len(seen) == 2 and seen[0].shape == (4, 3, 16, 16)                   # the clean training images
    with pytest.raises(ValueError, match='pass mapping_cond='): Trainer(m, data, TrainConfig(out_dir=None))
    with pytest.raises(ValueError, match='drop mapping_cond='):
        Trainer(HDiT(HDiTConfig.tiny(16)), data, TrainConfig(out_dir=None), mapping_cond=embed)


def test_trainer_trains_a_text_model_and_resumes(tmp_path):
    torch.manual_seed(0)
    data = [(torch.rand(3, 16, 16) * 2 - 1, c) for c in ['red heart', 'blue heart', 'left facing fist', 'fox'] * 2]
    cfg = TrainConfig(out_dir=str(tmp_path), steps=2, batch_size=4, progress=False, sample_n=2, sample_steps=2)
    Trainer(text_model(), data, cfg).fit()
    assert (tmp_path / 'samples.png').exists()
    t2 = Trainer(text_model(), data, cfg).fit(steps=3)                            # resumes at step 2
    assert t2.step == 3 and len(t2.losses) == 3
    with pytest.raises(ValueError, match=r'\(image, caption\) pairs'):
        Trainer(text_model(), [(torch.zeros(3, 16, 16), 0)], cfg)


def test_emoji_names_and_captioned_dataset():
    from hdit_edu.data import emoji_name, openmoji_text_dataset, ImageDataset
    assert emoji_name('1F98A') == 'fox' and emoji_name('2764-FE0F') == 'red heart'
    assert emoji_name('1F44D-1F3FF') == 'thumbs up dark skin tone'
    assert emoji_name('E000') is None                                  # an OpenMoji extra: no English name
    ds = openmoji_text_dataset(16, limit=30)
    assert ds.column_names == ['image', 'text', 'hexcode', 'label'] and len(ds) == 30
    assert all(emoji_name(h) == t for h, t in zip(ds['hexcode'], ds['text']))
    items = ImageDataset(ds, 16, text_column='text')
    assert isinstance(items[0][1], str) and 'captions' in repr(items)
    with pytest.raises(ValueError, match="no text column 'caption'"): ImageDataset(ds, 16, text_column='caption')


def test_captions_that_name_a_side_are_never_flipped():
    import datasets
    from PIL import Image
    from hdit_edu.data import ImageDataset
    im = Image.new('RGB', (8, 8), 'white'); im.putpixel((0, 0), (255, 0, 0))   # a red dot on the left edge
    ds = datasets.Dataset.from_dict({'image': [im] * 2, 'text': ['left-facing fist', 'red dot']},
                                    features=datasets.Features({'image': datasets.Image(), 'text': datasets.Value('string')}))
    items = ImageDataset(ds, 8, hflip=True, text_column='text')
    flips = {i: set() for i in range(2)}
    for epoch in range(12):
        items.set_epoch(epoch)
        for i in range(2): flips[i].add(bool(items[i][0][1, 0, 0] > 0))     # no red dot at the left edge: flipped
    assert flips[0] == {False} and flips[1] == {False, True}
