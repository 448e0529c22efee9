"""The one runtime beneath both pure cores (the way httpcore drives h11).

- ``loop``: ``CoreLoop``, the driver loop: persist -> fsync -> send -> apply, group commit;
- ``strong_driver``, ``eventual_driver``, ``membership_driver``: each core's adapter to it;
- ``disk_storage``, ``disklog``, ``framing``: one disk storage for both stores' records;
- ``transport``: peer connections and channels.

The runtime imports the cores and nothing else of the service
(``tests/test_layers.py``); the cores import nothing from it.
"""
