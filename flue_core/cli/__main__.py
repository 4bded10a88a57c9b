"""``python -m flue_core.cli``: the ``flue`` command."""

import sys

from flue_core.cli import main

sys.exit(main())
