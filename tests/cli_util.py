"Helpers shared by the command-line tests: run `hdit-edu` in-process and check one-line errors."
import contextlib, io

from hdit_edu.cli import main


def run_cli(argv):
    "Exit status, stdout and stderr of `main(argv)` (the parser exits by itself on bad options)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: status = main(argv)
        except SystemExit as e: status = e.code
    return status, out.getvalue(), err.getvalue()


def one_line_error(argv, *fragments, command_prefix=False):
    "Run `argv`, check it fails with status 2 and one line on stderr holding every fragment; return that line."
    status, _, err = run_cli(argv)
    assert status == 2, (argv, status, err)
    assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert ': error: ' in err, err
    if command_prefix: assert err.startswith(f'hdit-edu {argv[0]}: error: '), err
    for f in fragments: assert f in err, (f, err)
    return err.strip()


def write_edit_files(d):
    "An emoji at the shipped model's 64 px (`emoji.png`) and a mask painting its upper half (`mask.png`) in `d`."
    from PIL import Image
    from hdit_edu.data import openmoji_dataset
    openmoji_dataset(64, limit=1)['image'][0].convert('RGB').save(d / 'emoji.png')
    m = Image.new('L', (64, 64), 0); m.paste(255, (0, 0, 64, 32)); m.save(d / 'mask.png')
    return d
