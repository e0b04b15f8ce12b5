"""`python -m brainseg` runs the command line."""

import sys

from brainseg.cli import main

sys.exit(main())
