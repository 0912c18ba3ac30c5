"""``python -m monai_cxrcml.report``: see :mod:`monai_cxrcml.cli.report`."""

import sys

from monai_cxrcml.cli.report import main

sys.exit(main())
