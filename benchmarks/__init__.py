"""Side-by-side benchmarks: each workload runs liberate next to its baseline in the same run."""
