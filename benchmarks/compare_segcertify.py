"""The main job: one Lipschitz forward pass against SegCertify, side by side, with honest timing.

Same as ``lipcert compare`` (see ``lipcert compare --help`` for every flag), e.g.::

    .venv/bin/python benchmarks/compare_segcertify.py --limit 48 --out runs/compare
    .venv/bin/python benchmarks/compare_segcertify.py --dataset pets --root DATA/pets --size 128 \
        --lip runs/pets-lip.pt --twin runs/pets-twin.pt --eps 0.1 0.5 1.0 --sigma 0.25 0.5
"""

from __future__ import annotations

import sys

from lipcert.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
