"""Stream plumbing: the sharing operator and the choice of event loop."""
