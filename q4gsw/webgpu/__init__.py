"""WebGPU side of a case: provisioning, adapter and implementation, dispatch expressions, execution."""
