"Package-level checks that read better as plain tests than as notebook cells."
import pkgutil, subprocess, sys, textwrap
import hdit_edu


def test_every_module_imports_without_natten():
    """Every module imports with NATTEN hidden: NATTEN is an optional fast path, never a requirement.

    Runs in a fresh interpreter: reloading modules in this process would give the other tests
    second copies of every class (and `isinstance`/`pytest.raises` would then fail)."""
    names = [m.name for m in pkgutil.iter_modules(hdit_edu.__path__) if not m.name.startswith('_')]
    assert 'neighborhood' in names
    code = textwrap.dedent(f"""
        import sys, importlib, importlib.abc
        class HideNatten(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == 'natten' or name.startswith('natten.'): raise ModuleNotFoundError("No module named 'natten'")
        sys.meta_path.insert(0, HideNatten())
        for name in {names!r}: importlib.import_module('hdit_edu.' + name)
        from hdit_edu.fast_attention import na2d
        import torch
        q = torch.randn(1, 8, 8, 2, 4)
        assert na2d(q, q, q, 3).shape == q.shape
        assert not any(m == 'natten' or m.startswith('natten.') for m in sys.modules), 'natten was imported'
        print('ok')
    """)
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith('ok'), r.stderr[-3000:]


def test_version_matches_settings():
    from configparser import ConfigParser
    from pathlib import Path
    cfg = ConfigParser(); cfg.read(Path(__file__).parents[1] / 'settings.ini')
    assert hdit_edu.__version__ == cfg['DEFAULT']['version']
