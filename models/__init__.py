"""Everything that knows about torch and transformers: loading models and running batches."""
