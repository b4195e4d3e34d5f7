"""`python -m voxtok.cli` runs the console script."""

import sys

from voxtok.cli import main

sys.exit(main())
