"""``python -m zipfit_beam.cli ...``: the same as the ``zipfit-beam`` console script."""

import sys

from zipfit_beam.cli.main import main

sys.exit(main())
