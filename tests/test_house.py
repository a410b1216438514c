"""One house: the package's modules form layers (no import cycles, no module `__getattr__`), every class lives whole
in its own module, no `@patch` leaves a name bound to None, `import hdit_edu` stays light, and ruff is clean."""
import ast, importlib, inspect, pkgutil, shutil, subprocess, sys
from pathlib import Path
import pytest
import hdit_edu

PKG = Path(hdit_edu.__file__).parent
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(PKG)]) if not m.name.startswith('_'))


def import_graph() -> dict:
    "Module -> the hdit_edu modules it imports, from its source: every import, also those inside functions."
    graph = {}
    for name in MODULES:
        deps = set()
        for node in ast.walk(ast.parse((PKG / f'{name}.py').read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module: deps.add(node.module.split('.')[0])
                elif node.level == 1: deps |= {a.name for a in node.names}
                elif (node.module or '').startswith('hdit_edu.'): deps.add(node.module.split('.')[1])
                elif node.module == 'hdit_edu': deps |= {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split('.')[1] for a in node.names if a.name.startswith('hdit_edu.')}
            elif isinstance(node, ast.Call) and getattr(node.func, 'attr', '') == 'import_module' and node.args \
                    and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith('hdit_edu.'):
                deps.add(node.args[0].value.split('.')[1])
        graph[name] = sorted((deps & set(MODULES)) - {name})
    return graph


def find_cycle(graph):
    "One import cycle as a list of modules, or None."
    state, stack = {}, []
    def visit(m):
        state[m] = 'open'; stack.append(m)
        for d in graph[m]:
            if state.get(d) == 'open': return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = 'done'; stack.pop()
    for m in graph:
        if m not in state and (c := visit(m)): return c


def test_find_cycle_finds_a_cycle():
    "The checker itself: a made-up graph with a cycle is caught, a layered one is not."
    assert find_cycle({'a': ['b'], 'b': ['c'], 'c': ['a']}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': ['b', 'c'], 'b': ['c'], 'c': []}) is None


def test_no_import_cycles():
    graph = import_graph()
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    assert 'model' in graph['model_files'] and 'model_files' not in graph['model']   # the graph sees real imports


def test_no_module_getattr():
    "No module serves names lazily (no shims): every name is defined where it is imported from."
    assert [m for m in MODULES if 'def __getattr__(' in (PKG / f'{m}.py').read_text()
            and any(isinstance(n, ast.FunctionDef) and n.name == '__getattr__'
                    for n in ast.parse((PKG / f'{m}.py').read_text()).body)] == []


def test_no_patch_leftovers():
    "fastcore's `@patch` binds the patched function's name to None in the module: none may be left, private or not."
    leftovers = []
    for m in MODULES:
        mod = importlib.import_module(f'hdit_edu.{m}')
        leftovers += [f'{m}.{k}' for k, v in vars(mod).items() if v is None and not (k.startswith('__') and k.endswith('__'))]
    assert leftovers == []


def _functions(cls):
    "Every function defined on `cls` itself (methods, properties, class and static methods)."
    for name, v in vars(cls).items():
        if isinstance(v, (classmethod, staticmethod)): v = v.__func__
        if isinstance(v, property): yield from ((name, f) for f in (v.fget, v.fset) if f is not None); continue
        if inspect.isfunction(v): yield name, v


def test_classes_live_whole_in_their_module():
    "A method defined (or patched on) in another module than its class's is a class in pieces."
    strays = []
    for m in MODULES:
        mod = importlib.import_module(f'hdit_edu.{m}')
        for cls in (v for v in vars(mod).values() if inspect.isclass(v) and v.__module__ == mod.__name__):
            strays += [f'{cls.__module__}.{cls.__name__}.{n} (from {f.__module__})' for n, f in _functions(cls)
                       if f.__module__ != cls.__module__ and f.__module__.startswith('hdit_edu')]
    assert strays == []


def test_trainer_is_one_class():
    "The Trainer's loop, checkpoint and stop methods are its own, not a mixin chain from another module."
    from hdit_edu.training import Trainer
    assert Trainer.__mro__ == (Trainer, object)


HEAVY = ('datasets', 'pandas', 'pyarrow', 'matplotlib', 'accelerate', 'ipywidgets')


@pytest.mark.parametrize('stmt', ['import hdit_edu', 'import hdit_edu.cli'])
def test_light_import(stmt):
    "`import hdit_edu` (and the CLI's module, which `hdit-edu --help` loads) imports none of the heavy libraries."
    code = f"import sys; {stmt}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == '', f"{stmt} loaded {out}"


def test_ruff_clean():
    """ruff's pyflakes (F), bugbear (B), E402 and E501 at 120 columns over the package. The one exception is the first
    line of nbdev's generated `__all__` (nbdev wraps the list at 120 columns *after* `__all__ = `)."""
    ruff = shutil.which('ruff') or shutil.which('ruff', path=str(Path(sys.executable).parent))
    if ruff is None: pytest.skip('ruff is not installed (pip install -e ".[dev]")')
    res = subprocess.run([ruff, 'check', '--select', 'F,B,E402,E501', '--line-length', '120', '--output-format',
                          'concise', '--no-cache', str(PKG)], capture_output=True, text=True)
    found = [line for line in res.stdout.splitlines() if ': ' in line and line.startswith(str(PKG))]
    def generated_all(line):
        path, row = line.split(':')[:2]
        return 'E501' in line and Path(path).read_text().splitlines()[int(row) - 1].startswith('__all__ = [')
    assert [line for line in found if not generated_all(line)] == []


def test_the_home_page_map_matches_the_imports():
    "The home page's layer table lists every module once, in an order in which each imports only earlier ones."
    import json, re
    cells = json.loads((PKG.parent / 'nbs' / 'index.ipynb').read_text())['cells']
    text = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')
    table = text[text.index('| layer | modules, in order |'):].split('\n\n')[0]
    order = [m for row in table.splitlines()[2:] for m in re.findall(r'`(\w+)`', row.split('|')[2])]
    graph = import_graph(); graph.pop('__init__', None)
    assert sorted(order) == sorted(graph), set(order) ^ set(graph)
    pos = {m: i for i, m in enumerate(order)}
    assert [f'{m} imports {d}' for m in order for d in graph[m] if d != '__init__' and pos[d] > pos[m]] == []
