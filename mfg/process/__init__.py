"""Master batch records, batches, step execution and deviations."""
