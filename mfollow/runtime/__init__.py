"""What every layer runs on: typed errors, devices, torch.distributed groups, deterministic kernels,
progress reporting."""
