"""The booking core: models, reservation gate, booking service. Knows nothing about HTTP."""
