"""moto's server with stream sequence numbers that are unique, as DynamoDB's are.

moto numbers a stream record ``len(records) + start`` and then appends it, from as many
threads as there are requests: two writes to one table at the same moment can get the
same SequenceNumber (moto/dynamodb/models/table.py, ``StreamShard.add``). A replicator
rightly treats a sequence number it has seen as a redelivery, so that moto race reads
as a lost write whenever two writers share a table, as in active-active regions where
the application and the replicator both write. The chaos suite tests the replicator,
not moto: here numbering and appending happen under one lock.

    python -m chaos.motoserver -H 127.0.0.1 -p PORT   (the arguments of moto.server)
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.models.table import StreamShard
from moto.server import main

_numbering = threading.Lock()
_add = StreamShard.add


def _add_atomically(self: Any, old: Any, new: Any) -> None:
    with _numbering:
        _add(self, old, new)


StreamShard.add = _add_atomically  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
