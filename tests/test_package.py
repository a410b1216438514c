"""The top level of the package and its page: a docstring, the names a user needs, and metadata that tells the truth
(licences, development status, links that work on PyPI)."""
import re, tomllib
from configparser import ConfigParser
from pathlib import Path
import hdit_edu

ROOT = Path(__file__).parents[1]


def test_top_level_names():
    assert hdit_edu.__doc__ and 'HDiT' in hdit_edu.__doc__
    for name in hdit_edu.__all__: assert callable(getattr(hdit_edu, name)), name
    from hdit_edu.model_files import load_pretrained
    assert hdit_edu.load_pretrained is load_pretrained


def test_licence_expression_and_texts():
    "Code under MIT, shipped weights and OpenMoji-derived data under CC BY-SA 4.0: both declared, both texts shipped."
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    assert project['license'] == 'MIT AND CC-BY-SA-4.0'
    texts = {f: (ROOT / f).read_text() for f in project['license-files']}
    assert any(t.startswith('MIT License') for t in texts.values())
    assert any(t.startswith('Attribution-ShareAlike 4.0 International') for t in texts.values())


def test_development_status_is_alpha():
    "settings.ini's `status = 3` means '3 - Alpha' (nbdev's numbering since 2.3.11), as setup.py writes it."
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini')
    setup = (ROOT / 'setup.py').read_text()
    statuses = eval(re.search(r"statuses = (\[.*\])", setup).group(1))
    assert "statuses[int(cfg['status']) - 1]" in setup
    assert statuses[int(cfg['DEFAULT']['status']) - 1] == '3 - Alpha'


def test_readme_links_are_absolute():
    "PyPI shows README.md without the repository: every link and image points at the site or the raw repository."
    readme = (ROOT / 'README.md').read_text()
    links = re.findall(r'\]\(([^)\s]+)\)', readme) + re.findall(r'src="([^"]+)"', readme)
    assert links and [u for u in links if not u.startswith(('https://', 'http://', '#', 'mailto:'))] == []
    assert 'nbdev_docs`' not in readme.replace('`nbdev_docs` would', '')   # advice that overwrites README: gone


def test_a_folder_named_hdit_edu_in_the_working_directory_does_not_hide_the_package_files(tmp_path):
    "A clone of the repository (a folder `hdit_edu` without `__init__.py`) beside the working directory: the shipped"
    "reference and pretrained files are still found where the modules live."
    import subprocess, sys
    clone = tmp_path / 'hdit_edu'
    (clone / 'nbs').mkdir(parents=True); (clone / 'README.md').write_text('a clone\n')
    code = ("from hdit_edu.model_files import load_reference, PACKAGE_DIR, pretrained_models; "
            "from hdit_edu.quality import _default_path; load_reference(); "
            "assert 'openmoji64' in pretrained_models() and _default_path().exists(); print(PACKAGE_DIR)")
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert Path(out.stdout.strip()) == Path(hdit_edu.__file__).parent
