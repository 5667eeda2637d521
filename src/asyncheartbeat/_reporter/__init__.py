"""The reporter: one per client, it keeps all of that client's leases.

- `_reporter`: the `Reporter`, the seam a heartbeat speaks to (start, beat, end);
- `_lease`: the `Lease` handed across that seam;
- `_schedule`: every timer of the client in one heap;
- `_verdict`: what an outcome means for the work;
- `_calls`: the client's calls (admission, throttling, retries, events), with its helpers
  `_admission`, `_queue`, `_throttle`, `_latency` and `_overload`;
- `_host`: the task the reporter runs in.
"""

from ._lease import Lease
from ._reporter import MAX_HEDGES, Reporter

__all__ = ["MAX_HEDGES", "Lease", "Reporter"]
