"""``python -m monai_cxrcml.evaluation``: see :mod:`monai_cxrcml.cli.evaluation`."""

import sys

from monai_cxrcml.cli.evaluation import main

sys.exit(main())
