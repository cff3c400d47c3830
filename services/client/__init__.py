"""The Python client of the REST API: Client (async, async_client.py), SyncClient (blocking,
sync_client.py, the same Client run on a loop of its own), watch() over the WebSocket
(watch.py) and the exceptions (errors.py). Users import them from `jobledger`."""
