"""Layer 5, the notebook front end: the magics, options, cell plans and runs, subcommands, help."""
