"""Each study as a library function: configuration in, results table and figures out."""
