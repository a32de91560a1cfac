"""arq workers (the dispatch and relay issue): the only package that imports arq."""
