"""The first-model loop (`hdit_edu.first_model.train_simple`) is the Trainer's algorithm: same seed, same losses."""
import torch
import pytest
from hdit_edu.first_model import train_simple
from hdit_edu.model import HDiT, small_hdit_config
from hdit_edu.training import Trainer, TrainConfig


class Toy(torch.utils.data.Dataset):
    "Random labelled 16 px images (label -1: unlabelled), fixed by a seed."
    def __init__(self, n=24, labels=True):
        g = torch.Generator().manual_seed(1)
        self.x = torch.rand(n, 3, 16, 16, generator=g) * 2 - 1
        self.y = torch.randint(-1, 3, (n,), generator=g) if labels else torch.full((n,), -1)
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return self.x[i], self.y[i]


def tiny(num_classes=3, **kw):
    torch.manual_seed(0)
    return HDiT(small_hdit_config(16, num_classes=num_classes, width=32, depths=(1, 1), **kw))


def trainer_losses(model, data, steps, **kw):
    tr = Trainer(model, data, TrainConfig(out_dir=None, steps=steps, progress=False, mixed_precision='no',
                                          sample_n=0, **kw))
    tr.fit()
    return tr, tr.losses


@pytest.mark.parametrize('kw', [dict(), dict(weighting='karras', cond_dropout=0.5, hflip=False, seed=3, lr=1e-3)],
                         ids=['defaults', 'changed'])
def test_same_losses_and_weights_as_the_trainer(kw):
    data = Toy()
    ema, ours = train_simple(tiny(), data, steps=5, batch_size=8, **kw)
    tr, theirs = trainer_losses(tiny(), data, 5, batch_size=8, **{'lr': 2e-3, **kw})   # train_simple's lr
    assert ours == theirs                                   # bit for bit
    for (n, a), b in zip(ema.state_dict().items(), tr.ema.state_dict().values()):
        assert torch.equal(a, b), n


def test_unconditional_model_and_a_changed_seed():
    data = Toy(labels=False)
    _, a = train_simple(tiny(0), data, steps=3, batch_size=8)
    _, b = trainer_losses(tiny(0), data, 3, batch_size=8, lr=2e-3)
    _, c = train_simple(tiny(0), data, steps=3, batch_size=8, seed=1)
    assert a == b and a != c


def test_it_learns_and_keeps_the_model_out_of_the_ema():
    data = Toy(n=8)                                        # one smooth colour ramp, eight times: easy to learn
    data.x[:] = torch.linspace(-1, 1, 16)[None, None, None, :] * torch.tensor([1., -.5, .2])[None, :, None, None]
    model = tiny()
    ema, losses = train_simple(model, data, steps=40, batch_size=8, lr=2e-3)
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10])      # the loss goes down on a memorisable set
    assert ema is not model and not any(p.requires_grad for p in ema.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(ema.parameters(), model.parameters()))
