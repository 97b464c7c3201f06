"""CTR models: each a short composition of ``models.layers`` over one ``CTRModule`` base."""
