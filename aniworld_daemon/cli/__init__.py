"""The command line: the parser and main, and one module per command group (site, library, queue)."""
