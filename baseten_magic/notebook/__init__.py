"""Layer 4, the notebook front end: the `%%baseten` / `%baseten` magics and their cell parsing."""
