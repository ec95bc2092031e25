"""Pure business rules: no I/O, no framework. Tested exhaustively without a database."""
