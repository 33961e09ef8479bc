"""`python -m pipeline.cli`: the same as the `rokt-sfmc` script."""

import sys

from pipeline.cli import main

sys.exit(main())
