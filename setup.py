"Package setup, driven by settings.ini (nbdev 2 layout)."
from configparser import ConfigParser
import setuptools, shlex

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, f"missing expected setting: {o}"
setup_cfg = {o: cfg[o] for o in cfg_keys}

statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
lab_requirements = shlex.split(cfg.get('lab_requirements', ''))
min_python = cfg['min_python']

setuptools.setup(
    name=cfg['lib_name'],
    # the licence is the SPDX expression in pyproject.toml (`MIT AND CC-BY-SA-4.0`), not a classifier
    classifiers=['Development Status :: ' + statuses[int(cfg['status']) - 1],   # status 3 = '3 - Alpha'
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Intended Audience :: Education',
                 'Intended Audience :: Science/Research',
                 'Topic :: Scientific/Engineering :: Artificial Intelligence',
                 'Topic :: Scientific/Engineering :: Image Processing',
                 'Framework :: Jupyter',
                 'Operating System :: OS Independent',
                 'Natural Language :: ' + cfg['language'].title()]
                + ['Programming Language :: Python :: 3']
                + ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_namespace_packages(include=['hdit_edu', 'hdit_edu.*'], exclude=['*.__pycache__']),
    include_package_data=True,
    package_data={'hdit_edu': ['pretrained/*.safetensors', 'pretrained/*.json', 'pretrained/*.md',
                               'reference/*.pt', 'reference/*.md']},
    install_requires=requirements,
    extras_require={'dev': dev_requirements, 'lab': lab_requirements},
    dependency_links=cfg.get('dep_links', '').split(),
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d'],
    },
    **setup_cfg)
