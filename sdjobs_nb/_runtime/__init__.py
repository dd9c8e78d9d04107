"""The runtime: scheduling, running and controlling jobs on the running event loop (see docs/ARCHITECTURE.md)."""
