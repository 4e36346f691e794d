"""kvyard.deployments."""
