"""``python -m isolde.cli``: the same program as the ``isolde`` console script."""

from __future__ import annotations

import sys

from ..cli_entry import main

sys.exit(main())
