"""``python -m monai_cxrcml.calibration``: see :mod:`monai_cxrcml.cli.calibration`."""

import sys

from monai_cxrcml.cli.calibration import main

sys.exit(main())
