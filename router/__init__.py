"""kvyard.router."""
