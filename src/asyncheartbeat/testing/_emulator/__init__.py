"""The local Data Pipeline, piece by piece.

- `front`: `LocalDataPipeline`, which puts the pieces together;
- `wire`: HTTP, JSON 1.1 and the signature check; call limits and faults met there;
- `operations`: the operations table, one function per API operation, on the service
  (`asyncheartbeat.testing._service`);
- `recording`: every call received (`Call`), and the waits for more;
- `moves`: the table of moves a test makes from outside (cancel, inject ...), written once;
- `control`: the moves from another process, over ``POST /_emulator/<move>``;
- `options`: the emulator's options, written once;
- `process`: `EmulatorProcess`, the emulator in a child process;
- `command` and `ctl`: ``asyncheartbeat emulator`` and ``asyncheartbeat emulator ctl``.

Only `command`, `ctl`, `moves`, `options` and `control` may be imported without aiohttp.
"""
