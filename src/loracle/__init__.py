"""loracle: let a local language model learn a folder of documents."""

import os
import sys

# OpenMP worker threads that spin while they wait made two torch threads 15-35x slower than one on the busy
# 2-core VM (measured: 3.6-7.9 s per decode step instead of 0.2 s); sleeping workers make two threads as fast
# as one or faster. libgomp reads this once, when torch loads it, so it is set here before anything imports torch.
_policy_from_user = os.environ.get("OMP_WAIT_POLICY")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
#: whether torch's OpenMP workers sleep while idle (false if torch was loaded before loracle could ask for it)
OMP_WORKERS_SLEEP = os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE" and (
    _policy_from_user is not None or "torch" not in sys.modules
)

__version__ = "0.1.0"
