"""Stateless maths used by the layers; imports nothing else of the package."""
