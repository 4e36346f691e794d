"""kvyard.kvtransfer."""
