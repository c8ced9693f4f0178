"""``python -m minigram`` is the ``minigram`` command."""

import sys

from minigram.cli import main

sys.exit(main())
