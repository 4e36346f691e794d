"""One module per model family; each declares its delimiters (and, for harmony, its channel grammar)."""
