"""Usage data: ingestion formats, storage, the synthetic workload generator and the usage routes."""
