"""``python -m lipcert.cli``: the ``lipcert`` command."""

import sys

from . import main

sys.exit(main())
