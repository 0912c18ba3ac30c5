"""``python -m monai_cxrcml.data.summary``: see :mod:`monai_cxrcml.cli.summary`."""

import sys

from monai_cxrcml.cli.summary import main

sys.exit(main())
