"""``python -m monai_cxrcml.export``: see :mod:`monai_cxrcml.cli.export`."""

import sys

from monai_cxrcml.cli.export import main

sys.exit(main())
