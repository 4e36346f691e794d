"""kvyard.cluster."""
