"""The Python client of jobcast (docs/clients.md): the HTTP API and a resuming live watch.

```python
from jobcast.client import Client

with Client("http://127.0.0.1:8000", token) as client:    # or Client(): JOBCAST_URL/JOBCAST_TOKEN/config file
    job = client.submit("demo.count", {"steps": 50, "interval_ms": 50})
    async for message in client.watch(job.id):             # snapshot, then each event once, in order
        ...
```

Messages and documents are the wire format's own models (jobcast.events.schema); the CLI's
`submit`, `watch`, `list`, `get`, `cancel` and `kinds` are thin users of this package.
"""

from jobcast.client.http import ApiError, Client, ClientError, EventHistory, SubmittedJob, Unreachable
from jobcast.client.watch import Backoff, JobWatch, Message, WatchError, ws_url_for

__all__ = [
    "ApiError", "Backoff", "Client", "ClientError", "EventHistory", "JobWatch", "Message", "SubmittedJob",
    "Unreachable", "WatchError", "ws_url_for",
]
