"""The list/watch protocol: a pure state machine, the HTTP transport, and the driver."""
