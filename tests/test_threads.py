"""hdit_edu.threads: one way of counting cores, the automatic thread count, and `cpu_threads`."""
import os
import pytest
import torch
from hdit_edu import threads as th
from hdit_edu.threads import cpu_threads, auto_threads, cpu_count

@pytest.fixture
def startup_threads(monkeypatch):
    "PyTorch at its start-up thread count with no OMP_NUM_THREADS: the case where cpu_threads() may choose."
    old = torch.get_num_threads()
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    torch.set_num_threads(th._STARTUP_THREADS)
    yield th._STARTUP_THREADS
    torch.set_num_threads(old)


def test_auto_threads_counts_free_cores(monkeypatch):
    monkeypatch.setattr(th, 'cpu_count', lambda: 8)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        for load, want in [(0.0, 4), (5.2, 3), (7.9, 1), (30.0, 1)]:
            monkeypatch.setattr(th.os, 'getloadavg', lambda load=load: (load, load, load))
            assert auto_threads() == want, load
        def no_loadavg(): raise OSError('no load average')
        monkeypatch.setattr(th.os, 'getloadavg', no_loadavg)
        assert auto_threads() == 4                  # keep PyTorch's count
    finally: torch.set_num_threads(old)


def test_cpu_threads_explicit_sets_and_restores():
    old = torch.get_num_threads()
    target = 2 if old != 2 else 1
    with cpu_threads(target) as n:
        assert n == target and torch.get_num_threads() == target
    assert torch.get_num_threads() == old
    with pytest.raises(RuntimeError):               # restored also when the block raises
        with cpu_threads(target): raise RuntimeError('boom')
    assert torch.get_num_threads() == old
    with pytest.raises(ValueError, match='>= 1'):
        with cpu_threads(0): pass


def test_cpu_threads_auto_at_startup_default(startup_threads, monkeypatch):
    monkeypatch.setattr(th, 'auto_threads', lambda: startup_threads + 1)
    with cpu_threads() as n:
        assert n == startup_threads + 1 == torch.get_num_threads()
        with cpu_threads() as inner: assert inner == n   # nested: the outer choice stands
    assert torch.get_num_threads() == startup_threads

    @cpu_threads()
    def work(): return torch.get_num_threads()
    assert work() == startup_threads + 1 and torch.get_num_threads() == startup_threads


def test_cpu_threads_respects_the_users_choice(startup_threads, monkeypatch):
    monkeypatch.setattr(th, 'auto_threads', lambda: startup_threads + 1)
    monkeypatch.setenv('OMP_NUM_THREADS', str(startup_threads))
    with cpu_threads() as n: assert n == startup_threads == torch.get_num_threads()
    monkeypatch.delenv('OMP_NUM_THREADS')
    torch.set_num_threads(startup_threads + 2)      # chosen with torch.set_num_threads: left alone
    with cpu_threads() as n: assert n == startup_threads + 2 == torch.get_num_threads()
    torch.set_num_threads(startup_threads)
    with cpu_threads(device='cuda') as n: assert n == startup_threads == torch.get_num_threads()
    with cpu_threads(device='cpu') as n: assert n == startup_threads + 1


def test_cpu_count_is_the_affinity_mask():
    "Cores this process may run on: the affinity mask where the OS has one."
    want = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    assert cpu_count() == want >= 1
