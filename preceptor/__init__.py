"""preceptor: distil a large teacher LLM into a small specialist student, with experts in the loop."""

__version__ = "0.1.0"
