"""Files in and out: listing and opening inputs (any Beam filesystem), reading them into
records and documents, the target set, reading selected records back, the shard writer,
and publishing a job's output atomically."""
