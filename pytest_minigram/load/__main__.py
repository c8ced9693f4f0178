from __future__ import annotations

import sys

from pytest_minigram.load.cli import main

sys.exit(main())
