"""``python -m monai_cxrcml.inference``: see :mod:`monai_cxrcml.cli.inference`."""

import sys

from monai_cxrcml.cli.inference import main

sys.exit(main())
