"""Contender drivers: one small program per library, all speaking one protocol.

Invocation (the Go and Node.js drivers take the same arguments):

    driver SERVER EVENTS MODE [key=value ...]

- SERVER: `http://127.0.0.1:PORT` of the replay server, or the path of a kubeconfig.
- EVENTS: watch events to consume after the cache is synced.
- MODE: `run` (one informer, one handler), `share` (`subscribers=S` handlers or subscribers
  of one resource) or `dispose` (rx_informer: `tries=N` subscribe, sync, dispose cycles).
- Options: `pods=P` (objects the list holds, for libraries that signal no sync), `idle=S`
  (seconds to stay idle after the events, measuring CPU), `transform=drop-managed-fields`,
  `settle=S` (pause before the memory reading when EVENTS is 0), `timeout=S`, `cache=1`
  (the floor only: keep the decoded dicts, for the memory workload).

Every driver prints one JSON line on stdout. Times are seconds, memory kilobytes:

    {"contender": ..., "version": ..., "synced_s": ..., "events_s": ..., "events_seen": ...,
     "objects": ..., "cpu_sync_s": ..., "cpu_events_s": ..., "cpu_idle_s": ..., "idle_s": ...,
     "rss_start_kb": ..., "rss_synced_kb": ..., "rss_end_kb": ..., "hwm_kb": ...}

or `{"unavailable": "why"}` when the library cannot run here, or `{"error": "what"}`.
`synced_s` counts from the informer's start (imports and set-up excluded) to the moment the
library says its cache holds the list; `events_s` from then to the last of EVENTS events
reaching the handler. When EVENTS is 0 the driver waits `settle` seconds, collects garbage and
then reads `rss_synced_kb`, so that figure is memory kept, not garbage still to be freed.
"""
