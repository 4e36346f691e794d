"""Text handling in the frontend: render, tokenize, run the engines, detokenize, parse."""
