"""``python -m monai_cxrcml.experiments``: see :mod:`monai_cxrcml.cli.experiments`."""

import sys

from monai_cxrcml.cli.experiments import main

sys.exit(main())
