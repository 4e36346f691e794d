"""kvyard.policies."""
