"Package-level checks that read better as plain tests than as notebook cells."
import importlib, pkgutil
import hdit_edu


def test_every_module_imports_without_natten(monkeypatch):
    "Every module imports with NATTEN hidden: NATTEN is an optional fast path, never a requirement."
    import builtins
    real_import = builtins.__import__
    def no_natten(name, *args, **kwargs):
        if name == 'natten' or name.startswith('natten.'): raise ModuleNotFoundError("No module named 'natten'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_natten)
    names = [m.name for m in pkgutil.iter_modules(hdit_edu.__path__) if not m.name.startswith('_')]
    assert 'neighborhood' in names
    for name in names: importlib.reload(importlib.import_module(f'hdit_edu.{name}'))


def test_version_matches_settings():
    from configparser import ConfigParser
    from pathlib import Path
    cfg = ConfigParser(); cfg.read(Path(__file__).parents[1] / 'settings.ini')
    assert hdit_edu.__version__ == cfg['DEFAULT']['version']
