"""``python -m monai_cxrcml.phantom``: see :mod:`monai_cxrcml.cli.phantom`."""

import sys

from monai_cxrcml.cli.phantom import main

sys.exit(main())
