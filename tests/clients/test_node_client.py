"""ksqlDB's npm client (``@confluentinc/ksqldb-client`` 0.2.4, HTTP/2) against a real ksqlpy server.

``node/driver.js`` drives the client; what the client cannot do with any server is done with
plain requests on the client's own HTTP/2 session, and checked here as such:

* ``ddl()`` never settles: it waits for a ``'connect'`` event on the request stream, which Node's
  http2 streams do not emit (``'connect'`` is a session event).
* ``asyncIteratorQueryStream`` cannot read a response that ends (LIMIT, pull queries): on the
  stream's ``'close'`` it resolves a pending ``next()`` with its buffer and never marks itself
  closed. Push queries that stay open are read through it.

The package's dependency ``@thi.ng/bitstream@1.1.10`` is no longer published; ``package.json``
pins the nearest release with npm ``overrides`` (the client's code is unchanged).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from tests.clients.conftest import HERE, node_modules
from tests.server.conftest import RunningServer


def test_npm_ksqldb_client(client_server: RunningServer) -> None:
    modules = node_modules()
    node = shutil.which("node")
    assert node is not None
    run = subprocess.run(
        [node, str(HERE / "node" / "driver.js"), client_server.url, "NODE1"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["ddl_settled"] is False  # the client defect described above, not a server answer
    assert out["create"] == [200, "SUCCESS"]
    assert out["insert_values"] == [200, []]
    assert out["inserts_stream"] == [200, [{"seq": 0, "status": "ok"}]]
    assert out["push"] == [{"ID": "a", "V": 1}, {"ID": "b", "V": 2}]
    assert out["push_limit"] == [["a", 1], ["b", 2]]
    assert out["pull"] == [[2]]
    assert out["multiplexed"] == [[{"V": 1}, {"V": 2}]] * 20
    assert out["describe"] == ["ID", "V"]
    assert out["terminate_drop"] == ["SUCCESS", "SUCCESS"]
    assert out["error"] == [400, 40001]
