"""Photos to training batches: folders, the prepared store, splits, crops, the Lightning data module."""
