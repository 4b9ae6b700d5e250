"""``python -m prescale.scripts.eval_models``: see :mod:`.run`."""

import sys

from prescale.scripts.eval_models.run import main

sys.exit(main())
