"""The Ray-free training loop, written against a small context interface."""
