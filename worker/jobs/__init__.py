"""The job loop: claim a job, run the engine, store and record the outcome; dynamic batching,
overlap, and the inference worker's part in the fleet."""
