"""The command line: one module per verb group, each exporting ``COMMANDS``; ``main`` finds them."""
