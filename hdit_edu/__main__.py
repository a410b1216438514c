"`python -m hdit_edu`: the `hdit-edu` command line (see `hdit_edu.cli`)."
import sys

from hdit_edu.cli import main

if __name__ == '__main__': sys.exit(main())
