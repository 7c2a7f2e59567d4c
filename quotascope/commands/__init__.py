"""One module per CLI command. Each has `register(subparsers, parents)` and a `run(args) -> int`."""
