"The top level of the package: a docstring, the names a user needs, and no public module attribute left as None."
import importlib, pkgutil
import hdit_edu


def test_top_level_names():
    assert hdit_edu.__doc__ and 'HDiT' in hdit_edu.__doc__
    for name in hdit_edu.__all__: assert callable(getattr(hdit_edu, name)), name
    from hdit_edu.model_files import load_pretrained
    assert hdit_edu.load_pretrained is load_pretrained


def test_no_public_module_attribute_is_none():
    nones = []
    for m in pkgutil.iter_modules(hdit_edu.__path__):
        if m.name.startswith('_'): continue
        mod = importlib.import_module(f'hdit_edu.{m.name}')
        nones += [f'{m.name}.{k}' for k, v in vars(mod).items() if v is None and not k.startswith('_')]
    assert not nones, f'public module attributes that are None: {nones}'
