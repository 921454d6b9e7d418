"""Wire formats of other APIs, and the native result fields every format shows."""
